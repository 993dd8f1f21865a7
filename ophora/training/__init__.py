"""Two-stage training of the Ophora transformer: prepare (encode once), TPT, P2FT.

``prepare`` encodes clips and instructions into safetensors shards; ``data`` reads them in a step-determined
order; ``objective`` holds timestep sampling and the loss; ``checkpoint`` and ``logs`` write the run folder;
``trainer`` is the loop (``python -m ophora.train``).
"""
