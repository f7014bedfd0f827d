"""Tests of single modules, in-process or with the CLI; no server needed."""
