#pragma once
// Python config objects (sluice/config.py dataclasses) -> sluice::GatewayConfig.
// Read by attribute name, so any object with the same attributes will do.
// Unknown enumeration names raise ValueError naming the field; everything
// else is validated by compile(), which names the object and field.

#include <pybind11/pybind11.h>

#include "sluice/gateway.hpp"

namespace sluice::python {

template <typename T>
T attr(pybind11::handle o, const char* name) {
  return o.attr(name).cast<T>();
}

// Needs the GIL.
GatewayConfig gateway_config(pybind11::handle config);

}  // namespace sluice::python
