"""Remote function (edge endpoint): activate a staged model version on the edge.

Runs under Globus Compute (or the local pool), so every import is inside the body and the
arguments and result are small JSON values.
"""


def activate(site_root: str, version: str, wait_s: float = 60.0) -> dict:
    """Activate registry version `version`, staged in ``<site_root>/staging/<version>/``, into
    ``<site_root>/model/`` (the edge site's layout: ``ptychoflow.site.EdgeLayout``).

    `site_root` is the profile's ``edge.path`` as this endpoint sees it; the version must be a
    safe name. With an edge service running, waits up to `wait_s` for its verdict on this
    exact file (sha256) and raises ActivationRefused with the edge's reason, or
    ActivationTimeout; with none running, the edge's checks run here first.

    Returns {version, sha256, activated_at, serving_version, verdict}.
    """
    from ptychoflow.site import EdgeLayout, site_root as checked_root
    from ptychoflow_edge.activation import activate_staged

    layout = EdgeLayout(checked_root(site_root, source="activate", field="site_root"))
    return activate_staged(layout, version, wait_s=float(wait_s))
