"""The Wyoming front door (Home Assistant's Assist): a TCP listener in the gateway process that
serves speech-to-text and text-to-speech on one port, through tasks/ like the HTTP API."""

from .listener import WyomingListener

__all__ = ["WyomingListener"]
