"""PhysiCell projects on biosim (issue 17): bs.physicell.load reads a
settings file written from PhysiCell's documented schema (tests/data/physicell: a 2-D
tumour and macrophage project with substrates, Dirichlet faces, two cell
definitions with parent_type inheritance, a rules CSV and a cells CSV),
and ``biosim physicell`` runs it."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import biosim as bs

DATA = Path(__file__).parent / "data" / "physicell"
SETTINGS = (DATA / "PhysiCell_settings.xml").read_text()  # written from PhysiCell 1.14's documented schema
RULES = (DATA / "cell_rules.csv").read_text()


def _project(tmp_path, settings=SETTINGS, rules=RULES, cells=True):
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "PhysiCell_settings.xml").write_text(settings)
    (config / "cell_rules.csv").write_text(rules)
    if cells:
        rng = np.random.default_rng(0)
        lines = ["x,y,z,type,volume,custom:sample"]
        for k in range(60):
            x, y = rng.uniform(-150, 150, 2)
            lines.append(f"{x:.3f},{y:.3f},0,{'tumor' if k < 45 else '1'},{2494 if k % 2 else 2000},{k}")
        (config / "cells.csv").write_text("\n".join(lines) + "\n")
    return config / "PhysiCell_settings.xml"


def test_a_project_maps_onto_biosim_s_models(tmp_path):
    with pytest.warns(UserWarning, match=r"macrophage'><phenotype><intracellular>"):
        project = bs.physicell.read(_project(tmp_path))
    sim = project.simulation
    assert (project.max_time, project.save_interval) == (60.0, 30.0)
    assert project.output == (tmp_path / "output").resolve()
    assert sim.dt == 0.1 and sim.seed == 3 and sim.plane == 0.0
    np.testing.assert_array_equal(sim.box.lower, [-200, -200, -10])
    np.testing.assert_array_equal(sim.box.upper, [200, 200, 10])
    assert list(sim.substances) == ["oxygen", "pro_inflammatory_factor"]
    o2 = sim.substances["oxygen"]
    assert (o2.diffusion, o2.decay, o2.spacing, o2.dt) == (1e5, 0.1, 20.0, 0.01)
    assert o2.decay_split and o2.dirichlet_layer
    faces = {f: b["class"] for f, b in o2.to_dict()["boundary"].items()}
    assert faces == {"x-": "Dirichlet", "x+": "Dirichlet", "y-": "Dirichlet", "y+": "Dirichlet", "z-": "Neumann",
                     "z+": "Neumann"}  # no z faces in 2-D
    assert o2.to_dict()["boundary"]["x-"]["value"] == 38.0
    kinds = {p.name: [type(b).__name__ for b in p.behaviours] for p in sim.populations.values()}
    assert kinds == {"tumor": ["Volume", "CellCycle", "Apoptosis", "Necrosis", "Uptake", "Damage", "Rules"],
                     "macrophage": ["Volume", "CellCycle", "Apoptosis", "Necrosis", "Secretion", "Motility",
                                    "Interactions", "Damage", "Rules"]}
    tum, mac = (sim.populations[k].behaviours for k in ("tumor", "macrophage"))
    assert tum[1].durations == [1 / 0.00072] and tum[1].probability == "linear" and tum[1].placement == "physicell"
    assert mac[1].durations == [math.inf]  # its own rate 0 overrides the parent's
    assert tum[2].rate == 5.31667e-05 and tum[2].duration == 516.0 and tum[2].phases
    assert tum[2].cytoplasmic_biomass_change_rate == 1.66667e-02
    assert tum[3].lysed_duration == 86400.0 and tum[3].unlysed_fluid_change_rate == 1.11667e-2
    assert mac[0].total == 2494.0 and mac[0].cytoplasmic_biomass_change_rate == 0.0045  # inherited
    assert tum[4].rate == 10.0 and mac[4].rate == 1.0 and mac[4].target == 1.0
    inter = mac[6]
    assert inter.attack == {"tumor": 0.01} and inter.phagocytosis["apoptotic"] == 0.01
    assert inter.attack_duration == 30.0 and inter.probability == "linear"
    # adhesion sqrt(a_i aff_ij a_j aff_ji): the macrophage inherits the tumour's affinities
    a = 0.4
    np.testing.assert_allclose(sim.mechanics._matrix, [[a, a * math.sqrt(0.5)], [a * math.sqrt(0.5), a * 0.5]],
                               rtol=1e-15)
    assert sim.mechanics.repulsion == 10.0 and sim.mechanics.max_displacement == math.inf
    assert sim.mechanics.wall == 100.0  # <virtual_wall_at_domain_edge>: PhysiCell's strength
    t = sim.agents
    assert np.count_nonzero(t.type == 0) == 45 and np.count_nonzero(t.type == 1) == 15
    assert np.all(t.position[:, 2] == 0.0)
    np.testing.assert_allclose(np.sort(np.unique(t.diameter)), np.cbrt(6 / math.pi * np.array([2000.0, 2494.0])))
    assert sorted(t["sample"].tolist()) == list(range(60))


def test_a_project_runs_in_its_plane_with_its_rules(tmp_path):
    with pytest.warns(UserWarning):
        sim = bs.physicell.load(_project(tmp_path))
    sim.run(120)
    t = sim.agents
    assert np.all(t.position[:, 2] == 0.0)
    mac = t.type == 1
    assert t["rule_attack_tumor"][mac].max() > 0.01  # contacts raised it
    assert set(t.columns) >= {"rule_necrosis", "rule_apoptosis", "rule_phagocytose_apoptotic_cell", "volume"}
    assert sim.substances["pro_inflammatory_factor"].total() > 0


def test_the_template_places_number_of_cells_of_each_type(tmp_path):
    settings = SETTINGS.replace('cell_positions type="csv" enabled="true"', 'cell_positions type="csv" enabled="false"')
    with pytest.warns(UserWarning):
        sim = bs.physicell.load(_project(tmp_path, settings=settings, cells=False), seed=5)
    t = sim.agents
    assert sim.seed == 5 and np.bincount(t.type).tolist() == [5, 5]
    assert np.all(np.abs(t.position[:, :2]) <= 200) and np.all(t.position[:, 2] == 0.0)


def test_biosim_physicell_runs_a_project_folder(tmp_path):
    _project(tmp_path)
    out = subprocess.run([sys.executable, "-m", "biosim.cli", "physicell", str(tmp_path), "--max-time", "30",
                          "--quiet"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "<intracellular>" in out.stderr
    run = bs.io.open_run(tmp_path / "output" / "biosim.h5")
    assert run.steps.tolist() == [0, 300]  # every 30 min of 0.1
    assert len(run.agents(0)["uid"]) == 60 and 40 < len(run.agents(-1)["uid"]) <= 60  # some eaten


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("<PhysiCell_settings", "<Settings").replace("</PhysiCell_settings>", "</Settings>"),
     r"not a PhysiCell settings file \(the root element is <Settings>"),
    (lambda s: s[:200], r"not a PhysiCell settings file \(XML does not parse"),
    (lambda s: s.replace("<dy>20</dy>", "<dy>10</dy>"), r"<domain>: dx, dy, dz = \[20.0, 10.0, 20.0\]: biosim's"),
    (lambda s: s.replace("<x_max>200</x_max>", "<x_max>-300</x_max>"), r"each max must exceed its min"),
    (lambda s: s.replace("<dt_phenotype units=\"min\">6</dt_phenotype>", "<dt_phenotype units=\"min\">0.25"
                                                                          "</dt_phenotype>"),
     r"dt_phenotype 0.25 min must be a whole multiple of dt_mechanics 0.1 min"),
    (lambda s: s.replace("<decay_rate units=\"1/min\">0.1</decay_rate>", "<decay_rate>fast</decay_rate>"),
     r"<variable name='oxygen'><decay_rate>: 'fast' is not a number"),
    (lambda s: s.replace("<uptake_rate units=\"1/min\">10</uptake_rate>", "<uptake_rate>-1</uptake_rate>"),
     r"<secretion><substrate name='oxygen'><uptake_rate>: '-1'; it must be finite and >= 0"),
    (lambda s: s.replace('<cycle code="5" name="live"><phase_transition_rates units="1/min"><rate start_index="0" '
                         'end_index="0" fixed_duration="false">0.00072', '<cycle code="9" name="odd"><phase_'
                         'transition_rates units="1/min"><rate start_index="0" end_index="0" fixed_duration="false">'
                         '0.00072'), r"<cycle>: code 9 \('odd'\) is not a cycle model biosim has"),
    (lambda s: s.replace('parent_type="tumor"', 'parent_type="ghost"'), r"parent_type 'ghost' is not a cell "
                                                                      r"definition"),
    (lambda s: s.replace("<filename>cell_rules.csv</filename>", "<filename>missing.csv</filename>"),
     r"<cell_rules><ruleset>: names 'config/missing.csv', which does not exist"),
    (lambda s: s.replace("<folder>./config</folder><filename>cells.csv</filename>",
                         "<folder>../..</folder><filename>etc/passwd</filename>"), r"outside the project folder|does "
                                                                                   r"not exist"),
])
def test_bad_projects_are_refused_naming_the_element(tmp_path, edit, message):
    path = _project(tmp_path, settings=edit(SETTINGS))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        bs.physicell.load(path)


def test_bad_cells_and_rules_files_are_refused(tmp_path):
    path = _project(tmp_path)
    (tmp_path / "config" / "cells.csv").write_text("x,y,z,type\n1,2,0,tumor\n3,4,0,neuron\n")
    with pytest.raises(ValueError, match=r"cells.csv, line 3: cell type 'neuron' is neither a cell definition's "
                                         r"name nor its ID; definitions are tumor \(0\), macrophage \(1\)"):
        bs.physicell.load(path)
    (tmp_path / "config" / "cells.csv").write_text("x,y,z,type,volume\n1,2,0,tumor,-5\n")
    with pytest.raises(ValueError, match=r"column 'volume' must hold volumes > 0"):
        bs.physicell.load(path)
    (tmp_path / "config" / "cells.csv").write_text("1,2,0,0\n")
    (tmp_path / "config" / "cell_rules.csv").write_text("tumor,oxygen,decreases,necrosis,0,3.75\n")
    with pytest.raises(ValueError, match=r"cell_rules.csv, line 1: 6 fields; a CSV v3 rule has 8"):
        bs.physicell.load(path)
    (tmp_path / "config" / "cell_rules.csv").write_text("tumour,oxygen,decreases,necrosis,0,3.75,8,0\n")
    with pytest.raises(ValueError, match=r"cell type 'tumour' is not a population; populations are tumor, "
                                         r"macrophage"):
        bs.physicell.load(path)
    with pytest.raises(FileNotFoundError, match=r"PhysiCell settings file '.*nothing.xml' does not exist"):
        bs.physicell.load(tmp_path / "nothing.xml")


def test_a_rule_that_does_not_fit_names_the_file_line(tmp_path):
    path = _project(tmp_path, rules="// ok\ntumor,glucose,decreases,necrosis,0,3.75,8,0\n")
    with pytest.raises(ValueError, match=r"cell_rules.csv, line 2: unknown signal 'glucose'.*substances: oxygen, "
                                         r"pro_inflammatory_factor"):
        bs.physicell.load(path)


def test_a_bad_cycle_rate_names_its_element(tmp_path):
    settings = SETTINGS.replace('fixed_duration="false">0.00072</rate>', 'fixed_duration="false">fast</rate>', 1)
    with pytest.raises(ValueError, match=r"name='tumor'><cycle><phase_transition_rates>: rate from phase 0 = "
                                         r"'fast'; phases are 0..0, rates finite and >= 0"):
        bs.physicell.load(_project(tmp_path, settings=settings))


def test_advanced_chemotaxis_loads_as_motility_sensitivities(tmp_path):
    adv = ("<advanced_chemotaxis><enabled>true</enabled><normalize_each_gradient>true</normalize_each_gradient>"
           "<chemotactic_sensitivities><chemotactic_sensitivity substrate=\"oxygen\">-1.5</chemotactic_sensitivity>"
           "<chemotactic_sensitivity substrate=\"pro-inflammatory factor\">2</chemotactic_sensitivity>"
           "</chemotactic_sensitivities></advanced_chemotaxis>")
    old = "<options><enabled>true</enabled><use_2D>true</use_2D></options></motility>"
    assert SETTINGS.count(old) == 1
    settings = SETTINGS.replace(old, old.replace("</use_2D>", "</use_2D>" + adv))
    with pytest.warns(UserWarning) as w:
        sim = bs.physicell.load(_project(tmp_path, settings=settings))
    assert not any("<advanced_chemotaxis>" in str(x.message) for x in w)
    mot = [b for b in sim.populations["macrophage"].behaviours if type(b).__name__ == "Motility"][0]
    assert mot.sensitivities == {"oxygen": -1.5, "pro_inflammatory_factor": 2.0} and mot.normalize_each
    assert mot.bias == 0.5
    sim.run(3)
    bad = settings.replace("substrate=\"oxygen\">-1.5", "substrate=\"sugar\">-1.5")
    with pytest.raises(bs.physicell.PhysiCellError, match=r"substrate='sugar'>: 'sugar' is not a substrate"):
        bs.physicell.load(_project(tmp_path, settings=bad))
