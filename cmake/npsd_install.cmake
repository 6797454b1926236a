# Install rules and the Debian package (CPack), included by CMakeLists.txt.
#
#   cmake --install build [--prefix DIR]     binaries, man pages, docs, unit,
#                                            configuration in NPSD_CONFDIR
#   (cd build && cpack -G DEB)               npsd_<version>_<arch>.deb
#
# Everything follows CMAKE_INSTALL_PREFIX (GNUInstallDirs) except the
# configuration: npsd looks for /etc/npsd/npsd.conf whatever its prefix, so
# NPSD_CONFDIR is absolute (a DESTDIR still applies).

include(GNUInstallDirs)

set(NPSD_CONFDIR "/etc/npsd" CACHE PATH
    "Where the configuration and the theme lexicon are installed (absolute)")
# npsd looks there when neither --config nor ./config/npsd.conf is given
target_compile_definitions(npsd_core PUBLIC NPSD_SYSCONFDIR="${NPSD_CONFDIR}")
# Relative to the prefix: /usr/lib/systemd/system for the package,
# /usr/local/lib/systemd/system for a default source install; systemd reads
# both.
set(NPSD_SYSTEMD_UNITDIR "lib/systemd/system" CACHE PATH
    "Where the systemd unit is installed (relative to the prefix, or absolute)")

# The installed npsd.conf is the annotated config/npsd.conf with themes.file
# pointing at the installed lexicon (the source tree's copy leaves it empty:
# the built-in lexicon, identical to config/themes.conf).
set(NPSD_CONF_INSTALLED ${CMAKE_BINARY_DIR}/install/npsd.conf)
add_custom_command(
  OUTPUT ${NPSD_CONF_INSTALLED}
  COMMAND ${CMAKE_COMMAND} -DIN=${CMAKE_SOURCE_DIR}/config/npsd.conf
          -DOUT=${NPSD_CONF_INSTALLED}
          -DTHEMES=${NPSD_CONFDIR}/themes.conf
          -P ${CMAKE_SOURCE_DIR}/cmake/npsd_conf_install.cmake
  DEPENDS ${CMAKE_SOURCE_DIR}/config/npsd.conf
          ${CMAKE_SOURCE_DIR}/cmake/npsd_conf_install.cmake
  COMMENT "Preparing the installed npsd.conf")

# Man pages are installed gzipped (-n: no name or time stamp, so the same
# page gives the same bytes), as Debian policy asks; plain without gzip.
find_program(NPSD_GZIP gzip)
set(NPSD_MAN_INSTALLED)
foreach(page npsd.8 npsctl.1)
  if(NPSD_GZIP)
    set(npsd_man_out ${CMAKE_BINARY_DIR}/install/${page}.gz)
    add_custom_command(
      OUTPUT ${npsd_man_out}
      COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/docs/man/${page}
              ${CMAKE_BINARY_DIR}/install/${page}
      COMMAND ${NPSD_GZIP} -9nf ${CMAKE_BINARY_DIR}/install/${page}
      DEPENDS ${CMAKE_SOURCE_DIR}/docs/man/${page}
      COMMENT "Compressing ${page}")
  else()
    set(npsd_man_out ${CMAKE_SOURCE_DIR}/docs/man/${page})
  endif()
  list(APPEND NPSD_MAN_INSTALLED ${npsd_man_out})
  string(REGEX REPLACE ".*\\." "" npsd_man_sec ${page})
  install(FILES ${npsd_man_out}
          DESTINATION ${CMAKE_INSTALL_MANDIR}/man${npsd_man_sec})
endforeach()

install(TARGETS npsd npsctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
add_custom_target(npsd_install_files ALL
                  DEPENDS ${NPSD_CONF_INSTALLED} ${NPSD_MAN_INSTALLED})
install(FILES ${NPSD_CONF_INSTALLED} config/themes.conf
        DESTINATION ${NPSD_CONFDIR})
install(FILES README.md docs/contract.md docs/observability.md
              docs/benchmarks.md docs/asyncapi.yaml
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
# JSON Schemas of every message, for downstream consumers.
install(DIRECTORY docs/schemas DESTINATION ${CMAKE_INSTALL_DOCDIR})
# The annotated defaults, for comparison with a changed /etc/npsd/npsd.conf.
install(FILES config/npsd.conf RENAME npsd.conf.example
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The unit names the installed binary, so it is written at install time,
# when the prefix is final (cmake --install --prefix, or cpack's /usr).
if(IS_ABSOLUTE "${CMAKE_INSTALL_BINDIR}")
  set(npsd_bin "${CMAKE_INSTALL_BINDIR}/npsd")
else()
  set(npsd_bin "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/npsd")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_DOCDIR}")
  set(npsd_doc "${CMAKE_INSTALL_DOCDIR}")
else()
  set(npsd_doc "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}")
endif()
install(CODE "
  set(NPSD_BIN \"${npsd_bin}\")
  set(NPSD_DOCDIR \"${npsd_doc}\")
  set(NPSD_CONFDIR \"${NPSD_CONFDIR}\")
  configure_file(\"${CMAKE_SOURCE_DIR}/deploy/systemd/npsd.service.in\"
                 \"${CMAKE_BINARY_DIR}/install/npsd.service\" @ONLY)
")
install(FILES ${CMAKE_BINARY_DIR}/install/npsd.service
        DESTINATION ${NPSD_SYSTEMD_UNITDIR})

# ---- Debian package ----------------------------------------------------------
# Maintainer scripts get the configuration directory substituted; conffiles
# lists what dpkg keeps when the administrator changed it.
foreach(script postinst prerm postrm)
  configure_file(deploy/debian/${script}.in
                 ${CMAKE_BINARY_DIR}/debian/${script} @ONLY)
endforeach()
file(WRITE ${CMAKE_BINARY_DIR}/debian/conffiles
     "${NPSD_CONFDIR}/npsd.conf\n${NPSD_CONFDIR}/themes.conf\n")

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "npsd")
set(CPACK_PACKAGE_VENDOR "npsd")
set(NPSD_PACKAGE_CONTACT "npsd maintainers <npsd@localhost>" CACHE STRING
    "Maintainer field of the Debian package (name <address>)")
set(CPACK_PACKAGE_CONTACT "${NPSD_PACKAGE_CONTACT}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "NPS stream processor for customer-success teams (Kafka, Redis)")
set(CPACK_PACKAGE_DESCRIPTION
    "npsd consumes survey responses, product usage, account context and
follow-up actions from Kafka, keeps rolling per-account Net Promoter Score,
role gaps and health live in Redis, and publishes classified responses and
account alerts to Kafka. Includes npsctl, its command-line companion.")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # npsd_<version>_<arch>.deb
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# dpkg-shlibdeps names the runtime libraries from the binaries, with the
# lowest versions that have the symbols used (librdkafka1, libjansson4,
# libhiredis0.14, libmicrohttpd12, libc6; a sanitizer build's runtime too).
# adduser runs in postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_BINARY_DIR}/debian/conffiles
    ${CMAKE_BINARY_DIR}/debian/postinst
    ${CMAKE_BINARY_DIR}/debian/prerm
    ${CMAKE_BINARY_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

# tests/integration/it_package.py installs the package system-wide: it
# needs root and reports "skipped" (77) without it.
if(NPSD_TESTS AND TEST integration.it_package)
  set_tests_properties(integration.it_package PROPERTIES SKIP_RETURN_CODE 77)
endif()
