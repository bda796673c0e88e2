r"""The plugin's YAML properties (``overall.yaml``, ``model/``, ``dataset/``) and prompt templates
(``prompts/``), shipped inside the package so that an installed wheel finds them."""

import os

PROPERTIES_DIR = os.path.dirname(os.path.abspath(__file__))
