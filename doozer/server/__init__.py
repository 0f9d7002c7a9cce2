"""The process around a node: ``twistd doozer``'s options, the service that
opens its ports, authentication, limits, and the two client front ends.

- :mod:`doozer.server.tap`, :mod:`doozer.server.config`: options (SPEC §5)
- :mod:`doozer.server.service`: the twistd service: transport, ports, chores
- :mod:`doozer.server.auth`: client secrets and peers' one-time tokens
- :mod:`doozer.server.limits`, :mod:`doozer.server.hosts`: connection limits, Host and Origin
- :mod:`doozer.server.sniff`: one port, two protocols, chosen by the first byte
- :mod:`doozer.server.http`: the HTTP/JSON API, peers' endpoints, the WebView
- :mod:`doozer.server.doozerd`: doozerd's own client protocol
- :mod:`doozer.server.faults`: the TEST-ONLY fault hook of the fault suite
"""
