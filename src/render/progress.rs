//! Progress of long work (`doctor repro` cases): on a terminal one live line per running case
//! with its phase and elapsed time (indicatif); when stderr is not a terminal, plain lines as
//! phases change; nothing with `--no-progress` or `-q`.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::render::settings;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Live lines on a terminal.
    Live,
    /// One plain line per event.
    Lines,
    Off,
}

impl Mode {
    /// Live on a terminal, lines otherwise, off with `--no-progress` or `-q`.
    pub fn choose(no_progress: bool) -> Mode {
        if no_progress || settings().quiet {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Lines
        }
    }
}

struct Task {
    label: String,
    start: Instant,
    bar: Option<ProgressBar>,
}

/// The progress display shared by the worker threads.
pub struct Progress {
    mode: Mode,
    multi: Option<MultiProgress>,
    tasks: Mutex<Vec<Option<Task>>>,
}

impl Progress {
    pub fn new(mode: Mode, tasks: usize) -> Arc<Progress> {
        let multi = (mode == Mode::Live)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
        Arc::new(Progress {
            mode,
            multi,
            tasks: Mutex::new((0..tasks).map(|_| None).collect()),
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Task `i` starts, in `phase`.
    pub fn start(&self, i: usize, label: &str, phase: &str) {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {prefix} {msg} {elapsed}")
                    .expect("valid template"),
            );
            bar.set_prefix(label.to_string());
            bar.set_message(phase.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if self.mode == Mode::Lines {
            eprintln!("  {label}: {phase}");
        }
        if let Ok(mut t) = self.tasks.lock()
            && let Some(slot) = t.get_mut(i)
        {
            *slot = Some(Task {
                label: label.to_string(),
                start: Instant::now(),
                bar,
            });
        }
    }

    /// Task `i` moves on to `phase`.
    pub fn phase(&self, i: usize, phase: &str) {
        let Ok(t) = self.tasks.lock() else { return };
        let Some(Some(task)) = t.get(i) else { return };
        if let Some(bar) = &task.bar {
            bar.set_message(phase.to_string());
        }
        if self.mode == Mode::Lines {
            eprintln!(
                "  {}: {phase} ({:.0}s)",
                task.label,
                task.start.elapsed().as_secs_f64()
            );
        }
    }

    /// Task `i` is done; `line` (its result) is printed above the live lines, or plainly.
    pub fn finish(&self, i: usize, line: &str) {
        let task = self
            .tasks
            .lock()
            .ok()
            .and_then(|mut t| t.get_mut(i).and_then(Option::take));
        if let Some(bar) = task.and_then(|t| t.bar) {
            bar.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(&bar);
            }
        }
        match (&self.multi, self.mode) {
            (_, Mode::Off) => {}
            _ if line.is_empty() => {}
            (Some(m), _) => {
                let _ = m.println(line);
            }
            (None, _) => eprintln!("{line}"),
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<(Arc<Progress>, usize)>> = const { RefCell::new(None) };
}

/// Make task `i` of `p` the current one of this thread (for [`phase`]).
pub fn set_current(p: Option<(Arc<Progress>, usize)>) {
    CURRENT.with(|c| *c.borrow_mut() = p);
}

/// The current task of this thread moves on to `name` (a no-op without one).
pub fn phase(name: &str) {
    CURRENT.with(|c| {
        if let Some((p, i)) = c.borrow().as_ref() {
            p.phase(*i, name);
        }
    });
}
