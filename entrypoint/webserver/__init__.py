"""Code that runs inside the webserver's api-server (loaded through FAB's webserver_config.py)."""
