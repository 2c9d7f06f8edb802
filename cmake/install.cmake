# What `cmake --install` puts under the prefix:
#   bin/weld; include/weld.h; lib/libweld.so (SONAME libweld.so.MAJOR.MINOR)
#   and lib/libweld.a; lib/pkgconfig/weld.pc; lib/cmake/weld/ (find_package);
#   share/man/man1/weld.1 and weld-CMD.1; bash and zsh completions.
# Components: `cli` (the tool, its pages and completions) and `dev` (the rest),
# so a package or the Python wheel can take the tool alone.
#
# The man pages and completions are generated at build time by running the
# weld just built (scripts/gen-docs): the --help text is their one source.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

if(SKBUILD)
  # pip install: the tool goes to the environment's bin/ (scripts), pages
  # and completions to its share/; the library is not part of the wheel.
  set(WELD_BINDIR ${SKBUILD_SCRIPTS_DIR})
  set(WELD_DATADIR ${SKBUILD_DATA_DIR}/share)
else()
  set(WELD_BINDIR ${CMAKE_INSTALL_BINDIR})
  set(WELD_DATADIR ${CMAKE_INSTALL_DATADIR})
endif()

install(TARGETS weld RUNTIME DESTINATION ${WELD_BINDIR} COMPONENT cli)

find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND AND NOT CMAKE_CROSSCOMPILING)
  set(_docs ${CMAKE_BINARY_DIR}/docs)
  add_custom_command(OUTPUT ${_docs}/stamp
    COMMAND ${CMAKE_COMMAND} -E rm -rf ${_docs}/man ${_docs}/bash ${_docs}/zsh
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/scripts/gen-docs $<TARGET_FILE:weld> ${_docs}
    COMMAND ${CMAKE_COMMAND} -E touch ${_docs}/stamp
    DEPENDS weld ${CMAKE_SOURCE_DIR}/scripts/gen-docs
    COMMENT "Man pages and completions from weld's --help")
  add_custom_target(weld_docs ALL DEPENDS ${_docs}/stamp)
  install(DIRECTORY ${_docs}/man/ DESTINATION ${WELD_DATADIR}/man/man1 COMPONENT cli)
  install(FILES ${_docs}/bash/weld DESTINATION ${WELD_DATADIR}/bash-completion/completions COMPONENT cli)
  install(FILES ${_docs}/zsh/_weld DESTINATION ${WELD_DATADIR}/zsh/site-functions COMPONENT cli)
else()
  message(STATUS "weld: no man pages or completions (they need python3 and a weld that runs here)")
endif()

if(SKBUILD)
  return()
endif()

install(FILES include/weld.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)
set_target_properties(weld_shared PROPERTIES EXPORT_NAME weld)
set_target_properties(weld_static PROPERTIES EXPORT_NAME weld_static)
set(_targets weld_shared)
# A bundled build's libweld.a would need its bundled zlib, cJSON and
# libdeflate archives beside it, which are not ours to install; its
# libweld.so holds them, hidden, and is installed.
set(WELD_INSTALL_STATIC OFF)
if(NOT WELD_BUNDLED_DEPS)
  set(WELD_INSTALL_STATIC ON)
  list(APPEND _targets weld_static)
endif()
install(TARGETS ${_targets} EXPORT weldTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev NAMELINK_COMPONENT dev
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
set(_cmakedir ${CMAKE_INSTALL_LIBDIR}/cmake/weld)
install(EXPORT weldTargets NAMESPACE weld:: DESTINATION ${_cmakedir} COMPONENT dev)
configure_package_config_file(cmake/weldConfig.cmake.in ${CMAKE_BINARY_DIR}/weldConfig.cmake
  INSTALL_DESTINATION ${_cmakedir})
# Below 1.0 a minor release may change the API: only the same MAJOR.MINOR is compatible.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/weldConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/weldConfig.cmake ${CMAKE_BINARY_DIR}/weldConfigVersion.cmake
  DESTINATION ${_cmakedir} COMPONENT dev)

# pkg-config: `pkg-config --libs weld` is the shared library; --static adds
# what libweld.a needs (nothing of it for a bundled build, which has none).
set(WELD_PC_LIBS_PRIVATE "-lpthread -lm")
if(WELD_INSTALL_STATIC)
  set(WELD_PC_LIBS_PRIVATE "-lcjson -ldeflate -lz -lpthread -lm")
  if(WELD_HAVE_CUDA)
    string(APPEND WELD_PC_LIBS_PRIVATE " -L${CUDAToolkit_LIBRARY_DIR} -lcudart_static -ldl -lrt -lstdc++")
  endif()
endif()
file(RELATIVE_PATH WELD_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(cmake/weld.pc.in ${CMAKE_BINARY_DIR}/weld.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/weld.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
