//! The one integration-test binary (STYLE.md, item 10). Data-driven suites read their cases
//! from the folders beside this one; set `UPDATE_EXPECT=1` to rewrite expected outputs.

mod support;
mod tools;

mod authz;
mod browser;
mod cluster;
mod corpus;
mod crash;
mod definitions;
mod email;
mod forms;
mod fuzz;
mod http;
mod jobs;
mod mail;
mod processes;
mod robustness;
mod scenarios;
mod server;
mod store;
mod tidy;
mod validate;
mod web;
mod workers;
