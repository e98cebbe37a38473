# cmake -DINPUT=file -DOUTPUT=file.cpp -DSYMBOL=sluice::admin::kGraphPage -P EmbedAsset.cmake
# Writes a C++ source defining `const char* const SYMBOL` as the file's text
# (a raw string literal), so the binary serves the asset with no file around.
file(READ "${INPUT}" content)
string(FIND "${content}" ")sluice_asset\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw string delimiter )sluice_asset\"")
endif()
string(REGEX MATCH "^(.*)::([^:]+)$" _ "${SYMBOL}")
set(ns "${CMAKE_MATCH_1}")
set(name "${CMAKE_MATCH_2}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/EmbedAsset.cmake; do not edit.\n"
  "namespace ${ns} {\n"
  "extern const char* const ${name};\n"
  "const char* const ${name} = R\"sluice_asset(${content})sluice_asset\";\n"
  "}  // namespace ${ns}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
