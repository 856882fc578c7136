//! `ifconfig`.

use crate::state::Host;
use crate::{Fail, Res};

pub fn main(_host: &Host, _args: &[String]) -> Res<String> {
    Err(Fail::new(1, "ifconfig: not simulated yet"))
}
