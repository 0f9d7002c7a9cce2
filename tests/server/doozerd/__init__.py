"""Tests of doozerd's client protocol (doozer/server/doozerd/), in memory."""
