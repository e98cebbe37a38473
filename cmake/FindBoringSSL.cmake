# BoringSSL from Debian's android-libboringssl-dev (not OpenSSL).
# Defines BoringSSL::ssl and BoringSSL::crypto.
find_path(BoringSSL_INCLUDE_DIR openssl/base.h PATHS /usr/include/android NO_DEFAULT_PATH)
find_library(BoringSSL_SSL_LIBRARY ssl PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android
             NO_DEFAULT_PATH)
find_library(BoringSSL_CRYPTO_LIBRARY crypto
             PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android NO_DEFAULT_PATH)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BoringSSL REQUIRED_VARS BoringSSL_INCLUDE_DIR
                                  BoringSSL_SSL_LIBRARY BoringSSL_CRYPTO_LIBRARY)
if(BoringSSL_FOUND AND NOT TARGET BoringSSL::crypto)
  add_library(BoringSSL::crypto SHARED IMPORTED)
  set_target_properties(BoringSSL::crypto PROPERTIES IMPORTED_LOCATION ${BoringSSL_CRYPTO_LIBRARY}
                        INTERFACE_INCLUDE_DIRECTORIES ${BoringSSL_INCLUDE_DIR})
  add_library(BoringSSL::ssl SHARED IMPORTED)
  set_target_properties(BoringSSL::ssl PROPERTIES IMPORTED_LOCATION ${BoringSSL_SSL_LIBRARY}
                        INTERFACE_INCLUDE_DIRECTORIES ${BoringSSL_INCLUDE_DIR}
                        INTERFACE_LINK_LIBRARIES BoringSSL::crypto)
endif()
