"""Views of a cluster for people: summaries in numbers and pictures (SVG, PNG).

``summary`` counts GPUs per domain; ``layout`` lays the topology out as shapes (``drawing``);
``render`` writes them to a file, through Pillow for PNG. Above ``placement`` in the layering (a
view reads a ``placement.snapshot.ClusterSnapshot``), below ``commands``; the core never imports
it. The only package that may import Pillow or matplotlib (import-linter checks both).
"""
