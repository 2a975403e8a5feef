"""The whole pipeline on one machine: virtual beamline -> watcher -> local flows -> edge -> report."""
