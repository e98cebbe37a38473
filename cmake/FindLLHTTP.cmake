# llhttp ships as C sources in Debian's node-llhttp; sluice compiles them in.
# Sets LLHTTP_SOURCES and LLHTTP_INCLUDE_DIR.
find_path(LLHTTP_INCLUDE_DIR llhttp.h PATHS /usr/share/include/llhttp NO_DEFAULT_PATH)
find_path(LLHTTP_SOURCE_DIR llhttp.c PATHS /usr/share/llhttp NO_DEFAULT_PATH)
if(LLHTTP_SOURCE_DIR)
  set(LLHTTP_SOURCES ${LLHTTP_SOURCE_DIR}/llhttp.c ${LLHTTP_SOURCE_DIR}/api.c
                     ${LLHTTP_SOURCE_DIR}/http.c)
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(LLHTTP REQUIRED_VARS LLHTTP_INCLUDE_DIR LLHTTP_SOURCE_DIR)
