# Install the reusable libraries (notifier, mmu) and the guest SDK with a CMake package
# config so other projects can find_package(mmuvisor CONFIG) and link mmuvisor::notifier /
# mmuvisor::mmu, or build guests with mmuvisor_add_guest (guests/README.md).
include(CMakePackageConfigHelpers)

set(_targets mmuvisor_sanitizers)
foreach(t mmuvisor_base mmuvisor_notifier mmuvisor_mmu mmuvisor_guest_abi mmuvisor_guest_runtime)
  if(TARGET ${t})
    list(APPEND _targets ${t})
  endif()
endforeach()

install(TARGETS ${_targets} EXPORT mmuvisorTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# Headers keep their in-tree paths ("notifier/hub.h") under include/mmuvisor/.
foreach(dir notifier mmu)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mmuvisor/${dir}
          FILES_MATCHING PATTERN "*.h")
endforeach()
# The guest SDK: guest_abi.h and guest_runtime.h (include/mmuvisor/), the runtime library
# (above), the linker scripts and the CMake function.
install(FILES ${PROJECT_SOURCE_DIR}/guests/include/mmuvisor/guest_abi.h
              ${PROJECT_SOURCE_DIR}/guests/include/mmuvisor/guest_runtime.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mmuvisor)
set(MMUVISOR_INSTALL_GUEST_LD_DIR ${CMAKE_INSTALL_DATADIR}/mmuvisor/guest)
install(FILES ${PROJECT_SOURCE_DIR}/guests/runtime/long64.ld
              ${PROJECT_SOURCE_DIR}/guests/runtime/real16.ld
        DESTINATION ${MMUVISOR_INSTALL_GUEST_LD_DIR})
install(FILES ${PROJECT_SOURCE_DIR}/cmake/MmuvisorGuest.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mmuvisor)
install(EXPORT mmuvisorTargets NAMESPACE mmuvisor:: FILE mmuvisorTargets.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mmuvisor)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mmuvisorConfig.cmake.in
    ${PROJECT_BINARY_DIR}/mmuvisorConfig.cmake
    INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mmuvisor
    PATH_VARS MMUVISOR_INSTALL_GUEST_LD_DIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mmuvisorConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mmuvisorConfig.cmake
              ${PROJECT_BINARY_DIR}/mmuvisorConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mmuvisor)
