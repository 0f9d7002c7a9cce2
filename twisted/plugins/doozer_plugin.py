"""twistd plugin: ``twistd doozer`` (the logic lives in doozer.tap)."""

from twisted.application.service import ServiceMaker

doozer = ServiceMaker(
    "doozer",
    "doozer.tap",
    "a doozer node: consistent, highly-available store with watches",
    "doozer",
)
