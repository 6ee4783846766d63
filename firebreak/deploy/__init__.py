"""Real hosts from one inventory: `load_inventory` reads and checks it, `render` turns it (with the
estate's secrets) into every host's files. The component functions in `components` are the ones
the lab calls for its own sites."""

from firebreak.deploy.inventory import Inventory, load_inventory
from firebreak.deploy.render import RenderedFile, render
from firebreak.deploy.secrets import DeploySecrets, make_secrets

__all__ = ["DeploySecrets", "Inventory", "RenderedFile", "load_inventory", "make_secrets", "render"]
