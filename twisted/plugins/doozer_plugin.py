"""twistd plugin: ``twistd doozer`` (the logic lives in doozer.server.tap)."""

from twisted.application.service import ServiceMaker

doozer = ServiceMaker(
    "doozer",
    "doozer.server.tap",
    "a doozer node: consistent, highly-available store with watches",
    "doozer",
)
