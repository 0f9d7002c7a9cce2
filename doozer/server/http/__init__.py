"""The HTTP front end: Klein routes (:mod:`.api`) behind a gate (:mod:`.gate`),
arguments (:mod:`.args`), rendering (:mod:`.render`), the site and its
connections (:mod:`.site`, :mod:`.channel`), fetching from peers
(:mod:`.peerhttp`) and the WebView (:mod:`.webview`). It translates only:
every operation is the node's."""
