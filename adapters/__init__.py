"""passk's advantage estimators inside other RL engines: verl (verl_passk.py), TRL (trl_passk.py).

A thin layer over advantage.py (the repository root must be on the import path): grouped.py turns
the flat, id-grouped batch an engine hands over into the [G, N] rows advantage.py's estimators
take. Nothing in passk's core imports this folder, verl or TRL; docs/engines.md says how to use it.
"""
