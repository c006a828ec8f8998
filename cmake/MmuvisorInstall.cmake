# Install the reusable libraries (notifier, mmu) with a CMake package config so other
# projects can find_package(mmuvisor CONFIG) and link mmuvisor::notifier / mmuvisor::mmu.
include(CMakePackageConfigHelpers)

set(_targets mmuvisor_sanitizers)
foreach(t mmuvisor_notifier mmuvisor_mmu)
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
install(EXPORT mmuvisorTargets NAMESPACE mmuvisor:: FILE mmuvisorTargets.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mmuvisor)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mmuvisorConfig.cmake.in
    ${PROJECT_BINARY_DIR}/mmuvisorConfig.cmake
    INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mmuvisor)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mmuvisorConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mmuvisorConfig.cmake
              ${PROJECT_BINARY_DIR}/mmuvisorConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mmuvisor)
