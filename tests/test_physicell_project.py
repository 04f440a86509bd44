"""PhysiCell projects on biosim (issue 17): bs.physicell.load reads a
settings file the test writes from PhysiCell's documented schema (a 2-D
tumour and macrophage project with substrates, Dirichlet faces, two cell
definitions with parent_type inheritance, a rules CSV and a cells CSV),
and ``biosim physicell`` runs it."""
import math
import subprocess
import sys

import numpy as np
import pytest

import biosim as bs
from biosim import models

SETTINGS = """<?xml version="1.0" encoding="UTF-8"?>
<PhysiCell_settings version="devel-version">
  <domain>
    <x_min>-200</x_min><x_max>200</x_max><y_min>-200</y_min><y_max>200</y_max><z_min>-10</z_min><z_max>10</z_max>
    <dx>20</dx><dy>20</dy><dz>20</dz><use_2D>true</use_2D>
  </domain>
  <overall>
    <max_time units="min">60</max_time><time_units>min</time_units><space_units>micron</space_units>
    <dt_diffusion units="min">0.01</dt_diffusion><dt_mechanics units="min">0.1</dt_mechanics><dt_phenotype units="min">6</dt_phenotype>
  </overall>
  <parallel><omp_num_threads>6</omp_num_threads></parallel>
  <save><folder>output</folder><full_data><interval units="min">30</interval><enable>true</enable></full_data></save>
  <options><virtual_wall_at_domain_edge>true</virtual_wall_at_domain_edge><random_seed>3</random_seed></options>
  <microenvironment_setup>
    <variable name="oxygen" units="mmHg" ID="0">
      <physical_parameter_set><diffusion_coefficient units="micron^2/min">100000.0</diffusion_coefficient><decay_rate units="1/min">0.1</decay_rate></physical_parameter_set>
      <initial_condition units="mmHg">38</initial_condition>
      <Dirichlet_boundary_condition units="mmHg" enabled="True">38</Dirichlet_boundary_condition>
    </variable>
    <variable name="pro-inflammatory factor" units="dimensionless" ID="1">
      <physical_parameter_set><diffusion_coefficient units="micron^2/min">1000.0</diffusion_coefficient><decay_rate units="1/min">0.01</decay_rate></physical_parameter_set>
      <initial_condition units="mmHg">0</initial_condition>
      <Dirichlet_boundary_condition units="mmHg" enabled="false">0</Dirichlet_boundary_condition>
    </variable>
  </microenvironment_setup>
  <cell_definitions>
    <cell_definition name="tumor" ID="0">
      <phenotype>
        <cycle code="5" name="live"><phase_transition_rates units="1/min"><rate start_index="0" end_index="0" fixed_duration="false">0.00072</rate></phase_transition_rates></cycle>
        <death>
          <model code="100" name="apoptosis"><death_rate units="1/min">5.31667e-05</death_rate><phase_durations units="min"><duration index="0" fixed_duration="true">516</duration></phase_durations>
            <parameters><unlysed_fluid_change_rate units="1/min">0.05</unlysed_fluid_change_rate><lysed_fluid_change_rate units="1/min">0</lysed_fluid_change_rate><cytoplasmic_biomass_change_rate units="1/min">1.66667e-02</cytoplasmic_biomass_change_rate><nuclear_biomass_change_rate units="1/min">5.83333e-03</nuclear_biomass_change_rate><calcification_rate units="1/min">0</calcification_rate><relative_rupture_volume units="dimensionless">2.0</relative_rupture_volume></parameters></model>
          <model code="101" name="necrosis"><death_rate units="1/min">0.0</death_rate><phase_durations units="min"><duration index="0" fixed_duration="true">0</duration><duration index="1" fixed_duration="true">86400</duration></phase_durations>
            <parameters><unlysed_fluid_change_rate units="1/min">1.11667e-2</unlysed_fluid_change_rate><lysed_fluid_change_rate units="1/min">8.33333e-4</lysed_fluid_change_rate><cytoplasmic_biomass_change_rate units="1/min">5.33333e-5</cytoplasmic_biomass_change_rate><nuclear_biomass_change_rate units="1/min">2.16667e-3</nuclear_biomass_change_rate><calcification_rate units="1/min">0</calcification_rate><relative_rupture_volume units="dimensionless">2.0</relative_rupture_volume></parameters></model>
        </death>
        <volume><total units="micron^3">2494</total><fluid_fraction>0.75</fluid_fraction><nuclear>540</nuclear><fluid_change_rate>0.05</fluid_change_rate><cytoplasmic_biomass_change_rate>0.0045</cytoplasmic_biomass_change_rate><nuclear_biomass_change_rate>0.0055</nuclear_biomass_change_rate><calcified_fraction>0</calcified_fraction><calcification_rate>0</calcification_rate><relative_rupture_volume>2.0</relative_rupture_volume></volume>
        <mechanics><cell_cell_adhesion_strength units="micron/min">0.4</cell_cell_adhesion_strength><cell_cell_repulsion_strength units="micron/min">10.0</cell_cell_repulsion_strength><relative_maximum_adhesion_distance>1.25</relative_maximum_adhesion_distance>
          <cell_adhesion_affinities><cell_adhesion_affinity name="tumor">1.0</cell_adhesion_affinity><cell_adhesion_affinity name="macrophage">0.5</cell_adhesion_affinity></cell_adhesion_affinities>
          <attachment_elastic_constant>0.01</attachment_elastic_constant><attachment_rate>0.0</attachment_rate><detachment_rate>0.0</detachment_rate><maximum_number_of_attachments>12</maximum_number_of_attachments></mechanics>
        <motility><speed units="micron/min">1</speed><persistence_time units="min">1</persistence_time><migration_bias units="dimensionless">.5</migration_bias><options><enabled>false</enabled><use_2D>true</use_2D></options></motility>
        <secretion>
          <substrate name="oxygen"><secretion_rate units="1/min">0</secretion_rate><secretion_target units="substrate density">38</secretion_target><uptake_rate units="1/min">10</uptake_rate><net_export_rate units="total substrate/min">0</net_export_rate></substrate>
          <substrate name="pro-inflammatory factor"><secretion_rate units="1/min">0</secretion_rate><secretion_target units="substrate density">1</secretion_target><uptake_rate units="1/min">0</uptake_rate><net_export_rate units="total substrate/min">0</net_export_rate></substrate>
        </secretion>
        <cell_interactions><apoptotic_phagocytosis_rate units="1/min">0</apoptotic_phagocytosis_rate><necrotic_phagocytosis_rate units="1/min">0</necrotic_phagocytosis_rate><other_dead_phagocytosis_rate units="1/min">0</other_dead_phagocytosis_rate>
          <live_phagocytosis_rates><phagocytosis_rate name="tumor" units="1/min">0</phagocytosis_rate></live_phagocytosis_rates>
          <attack_rates><attack_rate name="tumor" units="1/min">0</attack_rate></attack_rates><attack_damage_rate units="1/min">1</attack_damage_rate><attack_duration units="min">0.1</attack_duration>
          <fusion_rates><fusion_rate name="tumor" units="1/min">0</fusion_rate></fusion_rates></cell_interactions>
        <cell_transformations><transformation_rates><transformation_rate name="tumor" units="1/min">0</transformation_rate></transformation_rates></cell_transformations>
        <cell_integrity><damage_rate units="1/min">0</damage_rate><damage_repair_rate units="1/min">0</damage_repair_rate></cell_integrity>
      </phenotype>
      <custom_data><sample conserved="false" units="dimensionless" description="">1.0</sample></custom_data>
    </cell_definition>
    <cell_definition name="macrophage" ID="1" parent_type="tumor">
      <phenotype>
        <cycle code="5" name="live"><phase_transition_rates units="1/min"><rate start_index="0" end_index="0" fixed_duration="false">0</rate></phase_transition_rates></cycle>
        <secretion>
          <substrate name="pro-inflammatory factor"><secretion_rate units="1/min">1</secretion_rate><secretion_target units="substrate density">1</secretion_target><uptake_rate units="1/min">0</uptake_rate><net_export_rate units="total substrate/min">0</net_export_rate></substrate>
        </secretion>
        <cell_interactions><apoptotic_phagocytosis_rate units="1/min">0.01</apoptotic_phagocytosis_rate><necrotic_phagocytosis_rate units="1/min">0.01</necrotic_phagocytosis_rate><other_dead_phagocytosis_rate units="1/min">0</other_dead_phagocytosis_rate>
          <live_phagocytosis_rates><phagocytosis_rate name="tumor" units="1/min">0</phagocytosis_rate></live_phagocytosis_rates>
          <attack_rates><attack_rate name="tumor" units="1/min">0.01</attack_rate></attack_rates><attack_damage_rate units="1/min">1</attack_damage_rate><attack_duration units="min">30</attack_duration>
          <fusion_rates><fusion_rate name="tumor" units="1/min">0</fusion_rate></fusion_rates></cell_interactions>
        <motility><speed units="micron/min">1</speed><persistence_time units="min">1</persistence_time><migration_bias units="dimensionless">.5</migration_bias><options><enabled>true</enabled><use_2D>true</use_2D></options></motility>
      </phenotype>
    </cell_definition>
  </cell_definitions>
  <initial_conditions><cell_positions type="csv" enabled="true"><folder>./config</folder><filename>cells.csv</filename></cell_positions></initial_conditions>
  <cell_rules><rulesets><ruleset protocol="CBHG" version="3.0" format="csv" enabled="true"><folder>./config</folder><filename>cell_rules.csv</filename></ruleset></rulesets><settings /></cell_rules>
  <user_parameters><random_seed type="int" units="dimensionless" description="">0</random_seed><number_of_cells type="int" units="none">5</number_of_cells></user_parameters>
</PhysiCell_settings>
"""

RULES = """// rules
tumor,oxygen,decreases,necrosis,0,3.75,8,0
tumor,damage,increases,apoptosis,0.1,5,4,0
macrophage,contact with tumor,increases,attack tumor,0.1,1,2,0
macrophage,pro-inflammatory factor,increases,phagocytose apoptotic cell,0.1,0.5,2,0
"""


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
    with pytest.warns(UserWarning, match=r"virtual_wall_at_domain_edge.*macrophage'><motility>"):
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
                     "macrophage": ["Volume", "CellCycle", "Apoptosis", "Necrosis", "Secretion", "RandomWalk",
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
    assert "virtual_wall_at_domain_edge" in out.stderr
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
