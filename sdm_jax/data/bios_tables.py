"""Bias in Bios label sets and the two tables the synthetic corpus is drawn from.

Both tables live here, and only here, so they can be replaced by shares computed from
``LabHC/bias_in_bios`` (count professions and the female fraction per profession on its train
split) without touching the generator. The values below are rounded approximations of the real
dataset's imbalance (De-Arteaga et al., 2019): professor about 30% of bios, physician 10%,
attorney 8%; rapper, dj, personal trainer and interior designer under 0.4% each; nurses,
dietitians, paralegals and yoga teachers mostly women; surgeons, software engineers, djs and
rappers mostly men.
"""

from __future__ import annotations

from types import MappingProxyType

# Label order of LabHC/bias_in_bios: index = the dataset's integer profession label.
PROFESSIONS: tuple[str, ...] = (
    "accountant", "architect", "attorney", "chiropractor", "comedian", "composer", "dentist",
    "dietitian", "dj", "filmmaker", "interior_designer", "journalist", "model", "nurse",
    "painter", "paralegal", "pastor", "personal_trainer", "photographer", "physician", "poet",
    "professor", "psychologist", "rapper", "software_engineer", "surgeon", "teacher",
    "yoga_teacher",
)  # fmt: skip

# Integer gender labels of LabHC/bias_in_bios: 0 male, 1 female.
GENDERS: tuple[str, ...] = ("male", "female")

# Fraction of all bios in each profession, in percent (normalised by the generator).
PROFESSION_SHARES = MappingProxyType({
    "accountant": 1.4, "architect": 2.5, "attorney": 8.2, "chiropractor": 0.7,
    "comedian": 0.7, "composer": 1.4, "dentist": 3.7, "dietitian": 1.0, "dj": 0.37,
    "filmmaker": 1.8, "interior_designer": 0.37, "journalist": 5.0, "model": 1.9, "nurse": 4.8,
    "painter": 2.0, "paralegal": 0.45, "pastor": 0.6, "personal_trainer": 0.36,
    "photographer": 6.1, "physician": 10.0, "poet": 1.8, "professor": 29.8,
    "psychologist": 4.6, "rapper": 0.35, "software_engineer": 1.7, "surgeon": 3.4,
    "teacher": 4.1, "yoga_teacher": 0.42,
})  # fmt: skip

# Fraction of women among the bios of each profession.
FEMALE_SHARES = MappingProxyType({
    "accountant": 0.37, "architect": 0.24, "attorney": 0.38, "chiropractor": 0.27,
    "comedian": 0.21, "composer": 0.16, "dentist": 0.35, "dietitian": 0.93, "dj": 0.14,
    "filmmaker": 0.33, "interior_designer": 0.81, "journalist": 0.50, "model": 0.83,
    "nurse": 0.91, "painter": 0.46, "paralegal": 0.85, "pastor": 0.24,
    "personal_trainer": 0.46, "photographer": 0.36, "physician": 0.50, "poet": 0.49,
    "professor": 0.45, "psychologist": 0.62, "rapper": 0.10, "software_engineer": 0.16,
    "surgeon": 0.15, "teacher": 0.60, "yoga_teacher": 0.85,
})  # fmt: skip
