"""Generated JSON codecs for protobuf messages (see proto_gen.generate).

``opencue_codecs`` is generated from the pinned opencue-proto and checked in; regenerate it
with ``python -m proto_gen.generate`` after changing that pin. The gateway uses these
through :mod:`opencue_gw.codec`, which loads them on first use and falls back to its reference
codec for types they do not cover. Nothing hand-written lives here besides the generator.
"""
