// The public Stats values: quantiles and their two text renderings.

#include "sluice/stats.hpp"

namespace sluice {

double HistogramValue::quantile(double) const { return 0; }  // TODO(lead): filled in next

std::string Stats::prometheus() const { return {}; }

std::string Stats::text() const { return {}; }

}  // namespace sluice
