# hiredis from libhiredis-dev, found through its pkg-config file (with a
# plain search as the fallback). Defines the imported target Hiredis::hiredis;
# headers are included as <hiredis/hiredis.h>.
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_HIREDIS QUIET hiredis)
endif()
# pkg-config's include dir is .../include/hiredis; sluice includes the
# header through its folder, so search for that form.
set(_hiredis_include_hints)
foreach(dir ${PC_HIREDIS_INCLUDE_DIRS})
  get_filename_component(parent ${dir} DIRECTORY)
  list(APPEND _hiredis_include_hints ${parent})
endforeach()
find_path(Hiredis_INCLUDE_DIR hiredis/hiredis.h HINTS ${_hiredis_include_hints})
find_library(Hiredis_LIBRARY NAMES hiredis HINTS ${PC_HIREDIS_LIBRARY_DIRS})
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Hiredis REQUIRED_VARS Hiredis_LIBRARY Hiredis_INCLUDE_DIR
                                  VERSION_VAR PC_HIREDIS_VERSION)
if(Hiredis_FOUND AND NOT TARGET Hiredis::hiredis)
  add_library(Hiredis::hiredis UNKNOWN IMPORTED)
  set_target_properties(Hiredis::hiredis PROPERTIES IMPORTED_LOCATION ${Hiredis_LIBRARY}
                        INTERFACE_INCLUDE_DIRECTORIES ${Hiredis_INCLUDE_DIR})
endif()
mark_as_advanced(Hiredis_INCLUDE_DIR Hiredis_LIBRARY)
