"""The text side of speech: normalization, G2P per language, sentence splitting and the map
from spoken words back to the written ones. Pure text; imports nothing of engines/,
scheduler/, tasks/ or the front doors."""
