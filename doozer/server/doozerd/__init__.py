"""doozerd's client protocol (SPEC §7): framed protobuf requests
(:mod:`.proto`, :mod:`.framing`), the verbs (:mod:`.protocol`) and WAITs
(:mod:`.wait`). It translates only: every operation is the node's."""
