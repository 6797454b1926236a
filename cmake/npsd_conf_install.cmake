# cmake -DIN=config/npsd.conf -DOUT=<file> -DTHEMES=<path> -P npsd_conf_install.cmake
#
# Writes the installed npsd.conf: the annotated IN with `themes.file = THEMES`
# instead of the empty value (the installed lexicon instead of the built-in
# one). Fails when IN has no such line, so that a reworded config cannot
# silently install a file that ignores the lexicon.
file(READ ${IN} text)
string(REGEX MATCHALL "\nthemes\\.file =[ ]*\n" found "${text}")
list(LENGTH found n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "${IN}: expected one empty 'themes.file =' line, found ${n}")
endif()
string(REGEX REPLACE "\nthemes\\.file =[ ]*\n" "\nthemes.file = ${THEMES}\n"
       text "${text}")
file(WRITE ${OUT} "${text}")
