"""Workhorse: one supervised process that runs every background job of the app, on Redis in arq's protocol."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("workhorse")
except PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0.0.0+local"
