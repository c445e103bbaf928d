"""The technician's tools: build, provision and flash MicroPython bundles (CPython).

build      compile a role's bundle with mpy-cross, write its manifest and archive
manifest   the manifest format and its signature (HMAC-SHA256, see ``edge.ota``)
provision  write one device's configuration and register its broker credentials
flash      copy a bundle and a configuration to a board with mpremote, then verify
cli        ``lumeau firmware build|provision|flash``
"""
