"""Two-stage training of the Ophora transformer: prepare (encode once), TPT, P2FT.

``prepare`` encodes clips and instructions into safetensors shards; ``data`` reads them in a step-determined
order; ``objective`` holds timestep sampling and the loss; ``loop`` is the training loop every generator shares
(accelerate, gradient accumulation, checkpoints, exact resume, run record), writing through ``checkpoint`` and
``logs``; ``trainer`` runs an Ophora stage on it (``python -m ophora.train``).
"""
