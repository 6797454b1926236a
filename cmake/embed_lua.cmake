# Writes OUT, a C file defining `const char npsd_lua_<name>[]` for each script
# in LUA (a ;-list of .lua paths). Run with cmake -P.
set(body "/* Generated from the Redis scripts in src/lua at build time. Do not edit. */\n")
foreach(f ${LUA})
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(REGEX REPLACE "((0x..,){24})" "\\1\n" hex "${hex}")
  string(APPEND body "const char npsd_lua_${name}[] = {\n${hex}0x00};\n")
endforeach()
file(WRITE ${OUT}.tmp "${body}")
configure_file(${OUT}.tmp ${OUT} COPYONLY)
