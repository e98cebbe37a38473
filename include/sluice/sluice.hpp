#pragma once
// Umbrella header: the whole public API.

#include "sluice/dns.hpp"
#include "sluice/endpoints.hpp"
#include "sluice/gateway.hpp"
#include "sluice/hooks.hpp"
#include "sluice/log.hpp"
#include "sluice/matcher.hpp"
#include "sluice/ratelimit.hpp"
#include "sluice/request.hpp"
#include "sluice/response_flags.hpp"
#include "sluice/result.hpp"
#include "sluice/router.hpp"
#include "sluice/security.hpp"
#include "sluice/stats.hpp"
#include "sluice/telemetry.hpp"
#include "sluice/upstream.hpp"
