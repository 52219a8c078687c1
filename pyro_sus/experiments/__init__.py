"""The built-in experiments, as data: each module registers its tables with
:func:`pyro_sus.tables.register_experiment` on import. Library code imports nothing from here;
``pyro-sus reproduce`` does."""

from . import arias_figueroa, jurasinski, pyro_tutorial, willetts, zoo

__all__ = ["arias_figueroa", "jurasinski", "pyro_tutorial", "willetts", "zoo"]
