def main(argv=None):
    raise SystemExit("graphc CLI not built yet")
