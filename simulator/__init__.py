"""The hotreload simulator: scripted git histories against a running service."""
