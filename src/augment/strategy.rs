//! Augmentation strategies, modes and parameter ranges (docs/method.md §2.2, §2.3).

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The CLI option a strategy string comes from (named in parse errors).
const OPTION: &str = "dsa-strategy";

/// One augmentation group of a strategy string. `Color` expands to three functions
/// (brightness, saturation, contrast); every other group is one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// Brightness, then saturation, then contrast.
    Color,
    /// Integer translation with zero fill.
    Crop,
    /// A zeroed square.
    Cutout,
    /// Horizontal mirror with probability `prob_flip`.
    Flip,
    /// Independent scaling of both axes (bilinear).
    Scale,
    /// Rotation about the centre (bilinear).
    Rotate,
}

impl Group {
    /// Every group, in the order the reference lists them.
    pub const ALL: [Group; 6] = [
        Group::Color,
        Group::Crop,
        Group::Cutout,
        Group::Flip,
        Group::Scale,
        Group::Rotate,
    ];

    /// The token of the strategy string (`color`, `crop`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Group::Color => "color",
            Group::Crop => "crop",
            Group::Cutout => "cutout",
            Group::Flip => "flip",
            Group::Scale => "scale",
            Group::Rotate => "rotate",
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An augmentation strategy: the listed groups in order (repetitions kept, as in
/// the reference). Empty = identity (strings `None`, `none` or ``).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Strategy {
    groups: Vec<Group>,
}

impl Strategy {
    /// A strategy from a list of groups.
    pub fn new(groups: Vec<Group>) -> Self {
        Self { groups }
    }
    /// The identity strategy (no augmentation).
    pub fn none() -> Self {
        Self::default()
    }
    /// The groups in the order given.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }
    /// True for the identity strategy.
    pub fn is_none(&self) -> bool {
        self.groups.is_empty()
    }
}

impl FromStr for Strategy {
    type Err = Error;

    /// Parses an underscore-separated list of `color`, `crop`, `cutout`, `flip`,
    /// `scale`, `rotate`; `None`/`none`/empty give the identity. An unknown or
    /// empty token is an [`Error::Option`] naming it.
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("none") {
            return Ok(Self::none());
        }
        let mut groups = Vec::new();
        for tok in t.split('_') {
            let g = Group::ALL.iter().copied().find(|g| g.name() == tok);
            match g {
                Some(g) => groups.push(g),
                None => {
                    let names: Vec<&str> = Group::ALL.iter().map(|g| g.name()).collect();
                    return Err(Error::option(
                        OPTION,
                        format!(
                            "unknown augmentation group '{tok}' in '{s}' (expected 'None' or an \
                             underscore-separated list of: {})",
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(Self { groups })
    }
}

impl fmt::Display for Strategy {
    /// The canonical string: `None` for the identity, else the tokens joined by `_`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.groups.is_empty() {
            return f.write_str("None");
        }
        for (k, g) in self.groups.iter().enumerate() {
            if k > 0 {
                f.write_str("_")?;
            }
            f.write_str(g.name())?;
        }
        Ok(())
    }
}

/// How the groups of a strategy are applied per call (docs/method.md §2.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AugMode {
    /// One group chosen uniformly per call (the reference default).
    #[default]
    S,
    /// Every listed group, in order, each with its own draws.
    M,
}

impl FromStr for AugMode {
    type Err = Error;

    /// `S` or `M` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "S" | "s" => Ok(AugMode::S),
            "M" | "m" => Ok(AugMode::M),
            other => Err(Error::option(
                "aug-mode",
                format!("unknown mode '{other}' (expected S or M)"),
            )),
        }
    }
}

/// Augmentation ranges: the reference's `ParamDiffAug` defaults (docs/method.md §2.2).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct DsaParams {
    /// Horizontal-flip probability (0.5).
    pub prob_flip: f64,
    /// Scale factors drawn in `[1/ratio_scale, ratio_scale]` (1.2).
    pub ratio_scale: f64,
    /// Rotation angle drawn in `[-ratio_rotate, ratio_rotate]` degrees (15).
    pub ratio_rotate: f64,
    /// Translation range as a fraction of the side (0.125).
    pub ratio_crop_pad: f64,
    /// Cutout square side as a fraction of the side (0.5).
    pub ratio_cutout: f64,
    /// Width of the additive brightness range, centred on 0 (1.0).
    pub brightness: f64,
    /// Saturation factor range `[0, saturation]` (2.0).
    pub saturation: f64,
    /// Contrast factor range `[contrast, contrast + 1]` (0.5).
    pub contrast: f64,
}

impl Default for DsaParams {
    fn default() -> Self {
        Self {
            prob_flip: 0.5,
            ratio_scale: 1.2,
            ratio_rotate: 15.0,
            ratio_crop_pad: 0.125,
            ratio_cutout: 0.5,
            brightness: 1.0,
            saturation: 2.0,
            contrast: 0.5,
        }
    }
}

impl DsaParams {
    /// Crop translation range at side `side`: `floor(side * ratio_crop_pad + 0.5)`.
    pub fn crop_shift(&self, side: usize) -> i32 {
        (side as f64 * self.ratio_crop_pad + 0.5).floor() as i32
    }
    /// Cutout square side L at side `side`: `floor(side * ratio_cutout + 0.5)`.
    pub fn cutout_side(&self, side: usize) -> i32 {
        (side as f64 * self.ratio_cutout + 0.5).floor() as i32
    }
    /// Errors unless every range is finite and sensible (probability in [0, 1],
    /// `ratio_scale >= 1`, the others >= 0).
    pub fn validate(&self) -> Result<()> {
        let checks = [
            (
                "prob_flip",
                self.prob_flip,
                (0.0..=1.0).contains(&self.prob_flip),
            ),
            ("ratio_scale", self.ratio_scale, self.ratio_scale >= 1.0),
            ("ratio_rotate", self.ratio_rotate, self.ratio_rotate >= 0.0),
            (
                "ratio_crop_pad",
                self.ratio_crop_pad,
                self.ratio_crop_pad >= 0.0,
            ),
            ("ratio_cutout", self.ratio_cutout, self.ratio_cutout >= 0.0),
            ("brightness", self.brightness, self.brightness >= 0.0),
            ("saturation", self.saturation, self.saturation >= 0.0),
            ("contrast", self.contrast, self.contrast >= 0.0),
        ];
        for (name, v, ok) in checks {
            if !v.is_finite() || !ok {
                return Err(Error::option(
                    "dsa-params",
                    format!("{name} = {v} is out of range"),
                ));
            }
        }
        Ok(())
    }
}
