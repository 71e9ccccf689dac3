"""The ground floor: message models, schemas and WSDLs, the error tree and the decision state.

Nothing here imports any other part of gridbus.
"""

from pathlib import Path

#: Folder of the contracts' files (schemas, WSDLs) and of one example message per message type.
CONTRACTS_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = CONTRACTS_DIR / "examples"
