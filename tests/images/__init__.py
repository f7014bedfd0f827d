"""Tests that build the container images and run them."""
