def pytest_configure(config):
    config.addinivalue_line(
        "markers", "debugmode: runs a test suite in a subprocess with GRAPHC_DEBUG=1 "
        "(Numba bounds checking; deselect with -m 'not debugmode')")
