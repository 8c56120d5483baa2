//! Runs a compiled dext once, the way the kernel drives one: loads the
//! library, starts the service a personality names, opens a user client,
//! makes the calls given, stops and releases everything, then prints the
//! runtime's leak report. For checking a dext under sanitizers in a process
//! of its own (`LD_PRELOAD` the sanitizer runtime):
//!
//! ```text
//! dextlink-driverkit-run LIB.so SERVICE_CLASS USER_CLIENT_CLASS [SELECTOR[:SCALAR,…][/OUTPUTS]]…
//! ```
//!
//! Exit status: 0 when everything ran and nothing leaked, 1 when something
//! leaked or a step failed, 2 for a usage error.

use std::process::ExitCode;

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("dextlink-driverkit-run: the DriverKit runtime for Linux runs on Linux only");
    ExitCode::from(2)
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    linux::main()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::path::Path;
    use std::process::ExitCode;

    use dextlink_sim::driverkit::{self, Call, Dictionary, Library, Service};

    struct Step {
        selector: u64,
        scalars: Vec<u64>,
        outputs: u32,
    }

    fn parse_number(text: &str, what: &str, step: &str) -> Result<u64, String> {
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        parsed.map_err(|_| format!("call `{step}`: {what} `{text}` is not a number"))
    }

    fn parse_step(text: &str) -> Result<Step, String> {
        let (head, outputs) = match text.split_once('/') {
            Some((head, outputs)) => (head, parse_number(outputs, "the output count", text)?),
            None => (text, 0),
        };
        let (selector, scalars) = match head.split_once(':') {
            Some((selector, scalars)) => (selector, scalars),
            None => (head, ""),
        };
        let scalars = scalars
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| parse_number(s, "the scalar", text))
            .collect::<Result<Vec<_>, _>>()?;
        if scalars.len() > 16 || outputs > 16 {
            return Err(format!("call `{text}`: at most 16 scalars in and out"));
        }
        Ok(Step {
            selector: parse_number(selector, "the selector", text)?,
            scalars,
            outputs: outputs as u32,
        })
    }

    fn run(args: &[String]) -> Result<bool, String> {
        let [library, service_class, client_class, steps @ ..] = args else {
            return Err("usage: dextlink-driverkit-run LIB.so SERVICE_CLASS USER_CLIENT_CLASS [SELECTOR[:SCALAR,…][/OUTPUTS]]…".into());
        };
        let steps = steps.iter().map(|s| parse_step(s)).collect::<Result<Vec<_>, _>>()?;
        let _library = Library::load(Path::new(library)).map_err(|e| e.to_string())?;
        let mut ok = true;
        {
            let personality = Dictionary::personality(service_class, Some(client_class))
                .map_err(|e| format!("personality: {e:?}"))?;
            let service = Service::start(&personality)
                .map_err(|e| format!("starting {service_class}: {e:?}"))?;
            println!("started {} (registered: {})", service.class_name(), service.is_registered());
            let client = service.new_user_client(0).map_err(|e| format!("NewUserClient: {e:?}"))?;
            println!("user client {}", client.class_name());
            for step in &steps {
                let call = Call {
                    selector: step.selector,
                    scalar_input: &step.scalars,
                    scalar_output_count: step.outputs,
                    ..Call::default()
                };
                match client.call(&call) {
                    Ok(reply) => {
                        println!("selector {}: ok {:?}", step.selector, reply.scalar_output)
                    }
                    Err(e) => println!("selector {}: {e:?}", step.selector),
                }
            }
            if let Err(e) = client.stop() {
                println!("stopping the user client: {e:?}");
                ok = false;
            }
            if let Err(e) = service.stop() {
                println!("stopping the service: {e:?}");
                ok = false;
            }
        }
        let leaks = driverkit::leak_report();
        if leaks.is_empty() {
            println!("no leaks");
        } else {
            print!("leaks:\n{leaks}");
            ok = false;
        }
        Ok(ok)
    }

    pub fn main() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(message) => {
                eprintln!("dextlink-driverkit-run: {message}");
                ExitCode::from(2)
            }
        }
    }
}
