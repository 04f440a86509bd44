"""The halo (aura) and migration traffic of a domain-decomposed biosim
run, on paper: per rank and step, for N agents on R ranks.

    python benchmarks/mpi_model.py                         # 10^9 agents on 1,000 ranks
    python benchmarks/mpi_model.py --agents 5.0151e11 --ranks 84096

The tissue is uniform at ``--density`` agents per µm³ (default: PhysiCell's
packed tumour, one 2494 µm³ cell per 2000 µm³). The box is a cube. Two
decompositions are compared: blocks as close to cubes as R allows
(px x py x pz = R), TeraAgent's boxes; and
1-D slabs along x, PhysiCell-X's "bread slices".

- **Aura.** A rank receives every agent within the interaction range w
  (µm) outside its faces: the shell (L + 2w)^3 - L^3 for a block of edge
  L, 2 w L_y L_z for a slab. Each such agent carries the columns a
  neighbour reads: position (24 B), diameter (8), type (4) and uid (8),
  which is 44 B (``--aura-bytes``).
- **Migration.** Agents that cross a face in a step move with all their
  columns (``--agent-bytes``, default 320 B: the physicell_template
  scenario's measured 319 B per agent). They are counted as the
  agents within the mean displacement per step d of a face, half of
  them moving out: rho x area x d / 2. The default d is 0.05 µm, a cell
  at PhysiCell's 0.5 µm/min over a 0.1 min step.

It prints agents per rank, the aura and migration agents and bytes per
rank and step, and their ratio to the rank's own agents. It also prints
the figures TeraAgent published, for scale: 501.51 billion agents on
84,096 cores; its per-step times are not published.
"""
import argparse
import math

TERAAGENT = {"agents": 501.51e9, "cores": 84_096}


def blocks(ranks):
    """(px, py, pz) with px py pz = ranks and the least surface per block
    (the factorisation closest to a cube)."""
    best = None
    for px in range(1, ranks + 1):
        if ranks % px:
            continue
        for py in range(1, ranks // px + 1):
            if (ranks // px) % py:
                continue
            pz = ranks // (px * py)
            surface = px + py + pz  # a block's faces: 2 E^2 (px + py + pz) / ranks for a box of edge E
            if best is None or surface < best[0]:
                best = (surface, (px, py, pz))
    return best[1]


def traffic(agents, ranks, density, width, step, aura_bytes, agent_bytes, layout):
    """Per rank and step: (agents per rank, block edges (x, y, z) µm, aura
    agents, migrating agents, aura bytes, migration bytes)."""
    volume = agents / density
    edge = volume ** (1.0 / 3.0)
    if layout == "cubes":
        L = tuple(edge / k for k in blocks(ranks))
    else:
        L = (edge / ranks, edge, edge)
        if L[0] < width:
            raise ValueError(f"slabs of {L[0]:.3g} µm are thinner than the interaction range {width} µm")
    own = agents / ranks
    if layout == "cubes":
        shell = (L[0] + 2 * width) * (L[1] + 2 * width) * (L[2] + 2 * width) - L[0] * L[1] * L[2]
        area = 2 * (L[0] * L[1] + L[1] * L[2] + L[0] * L[2])
    else:
        shell = 2 * width * L[1] * L[2]  # the two faces across x
        area = 2 * L[1] * L[2]
    aura = density * shell
    migrate = density * area * step / 2.0
    return own, L, aura, migrate, aura * aura_bytes, migrate * agent_bytes


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=float, default=1e9)
    p.add_argument("--ranks", type=int, default=1000)
    p.add_argument("--density", type=float, default=1.0 / 2000.0, help="agents per µm³")
    p.add_argument("--width", type=float, default=1.25 * 16.8,
                   help="interaction range, µm (PhysiCell's adhesion reach for 16.8 µm cells)")
    p.add_argument("--step", type=float, default=0.05, help="mean displacement per step, µm")
    p.add_argument("--aura-bytes", type=float, default=44.0)
    p.add_argument("--agent-bytes", type=float, default=320.0)
    a = p.parse_args()
    print(f"{a.agents:.4g} agents on {a.ranks} ranks, density {a.density:.3g} /µm³, interaction range "
          f"{a.width:g} µm, {a.step:g} µm per step")
    print(f"{'layout':<8} {'agents/rank':>12} {'block (µm)':>22} {'aura agents':>12} {'aura MB':>9} "
          f"{'aura/own':>9} {'migrating':>10} {'migr. MB':>9}")
    for layout in ("cubes", "slabs"):
        try:
            own, L, aura, mig, ab, mb = traffic(a.agents, a.ranks, a.density, a.width, a.step, a.aura_bytes,
                                                a.agent_bytes, layout)
        except ValueError as e:
            print(f"{layout:<8} n/a: {e}")
            continue
        block = " x ".join(f"{x:.4g}" for x in L)
        print(f"{layout:<8} {own:>12.4g} {block:>22} {aura:>12.4g} {ab / 1e6:>9.3g} {aura / own:>8.1%} "
              f"{mig:>10.4g} {mb / 1e6:>9.3g}")
    per_core = TERAAGENT["agents"] / TERAAGENT["cores"]
    print(f"TeraAgent (arXiv 2509.24063): {TERAAGENT['agents']:.4g} agents on {TERAAGENT['cores']:,} cores = "
          f"{per_core:.3g} agents per core; aura width = the largest interaction distance; delta encoding "
          f"sends up to 3.5x less; per-step times not published")


if __name__ == "__main__":
    main()
