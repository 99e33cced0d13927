//! The processes of an MPI job as the ranks of a data-parallel run (`--features mpi`):
//! `mpirun -n 4 wgseg train …`, `srun wgseg train …`.
//!
//! Sums are a reduction to rank 0 followed by a broadcast (not `MPI_Allreduce`, whose
//! algorithms may round differently on different ranks), so every rank gets the same bits.
//! [`Collective::abort`] prints the reason and calls `MPI_Abort`, which ends every process
//! of the job (the launcher reports it); a process that dies is reported by the launcher,
//! which then ends the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use super::Collective;
use crate::error::{Error, Result};

/// The environment variables launchers set in the processes they start: Open MPI's
/// `mpirun`, MPICH's Hydra and PMI-based launchers (Slurm's `srun --mpi=…`), PMIx.
const LAUNCHER_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];

/// Whether this process was started by an MPI launcher.
pub fn launched() -> bool {
    LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some())
}

/// A call for the MPI thread.
enum Req {
    SumF64(Vec<f64>, Sender<Vec<f64>>),
    SumF32(Vec<f32>, Sender<Vec<f32>>),
    Gather(u64, Sender<Vec<u64>>),
    Abort(String),
}

/// This process's place in the MPI job. See the module docs.
///
/// MPI handles may not cross threads, so one thread owns them: it initialises MPI
/// (`MPI_THREAD_FUNNELED`: only it calls MPI), serves the collectives sent to it in order,
/// and finalises MPI when the group is dropped.
pub struct MpiGroup {
    tx: Option<Sender<Req>>,
    thread: Option<JoinHandle<()>>,
    rank: usize,
    world: usize,
    local_rank: usize,
    reduced: AtomicU64,
}

impl MpiGroup {
    /// Initialises MPI (on the group's own thread) and joins the job's world communicator.
    pub fn init() -> Result<MpiGroup> {
        let (tx, rx) = channel::<Req>();
        let (ready_tx, ready_rx) = channel::<std::result::Result<[usize; 3], String>>();
        let thread = std::thread::Builder::new()
            .name("mpi".into())
            .spawn(move || serve(rx, ready_tx))
            .map_err(|e| Error::Collective(format!("starting the MPI thread: {e}")))?;
        let [rank, world, local_rank] = ready_rx
            .recv()
            .map_err(|_| Error::Collective("the MPI thread ended during MPI_Init".into()))?
            .map_err(Error::Collective)?;
        Ok(MpiGroup {
            tx: Some(tx),
            thread: Some(thread),
            rank,
            world,
            local_rank,
            reduced: AtomicU64::new(0),
        })
    }

    /// This process's rank among the processes of its node.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn call<T>(&self, req: impl FnOnce(Sender<T>) -> Req) -> Result<T> {
        let gone = || Error::Collective("the MPI thread has ended".into());
        let (tx, rx) = channel();
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(req(tx))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())
    }
}

impl Drop for MpiGroup {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which finalises MPI.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The MPI thread: init, report `[rank, world, local rank]`, serve, finalise.
fn serve(rx: Receiver<Req>, ready: Sender<std::result::Result<[usize; 3], String>>) {
    let Some((universe, _level)) = mpi::initialize_with_threading(Threading::Funneled) else {
        let _ = ready.send(Err("MPI was initialised already".into()));
        return;
    };
    let comm = universe.world();
    // The rank among the processes of this node: which of its adapters to take.
    let local = comm.split_shared(comm.rank()).rank() as usize;
    let rank = comm.rank() as usize;
    if ready.send(Ok([rank, comm.size() as usize, local])).is_err() {
        return;
    }
    while let Ok(req) = rx.recv() {
        match req {
            Req::SumF64(mut v, back) => {
                sum(&comm, rank, &mut v);
                let _ = back.send(v);
            }
            Req::SumF32(mut v, back) => {
                sum(&comm, rank, &mut v);
                let _ = back.send(v);
            }
            Req::Gather(value, back) => {
                let mut out = vec![0u64; comm.size() as usize];
                comm.all_gather_into(&value, &mut out[..]);
                let _ = back.send(out);
            }
            Req::Abort(why) => {
                eprintln!("wgseg: {why}; ending the MPI job");
                comm.abort(1)
            }
        }
    }
    drop(comm);
    drop(universe);
}

/// Sum to rank 0, then broadcast: the same bits everywhere.
fn sum<T>(comm: &SimpleCommunicator, rank: usize, data: &mut Vec<T>)
where
    T: Equivalence + Copy + Default,
{
    let root = comm.process_at_rank(0);
    if rank == 0 {
        let mut out = vec![T::default(); data.len()];
        root.reduce_into_root(&data[..], &mut out[..], SystemOperation::sum());
        *data = out;
    } else {
        root.reduce_into(&data[..], SystemOperation::sum());
    }
    root.broadcast_into(&mut data[..]);
}

impl Collective for MpiGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn all_reduce_f64(&self, data: &mut [f64]) -> Result<()> {
        let out = self.call(|back| Req::SumF64(data.to_vec(), back))?;
        data.copy_from_slice(&out);
        self.reduced
            .fetch_add(data.len() as u64 * 8, Ordering::Relaxed);
        Ok(())
    }

    fn all_reduce_f32(&self, data: &mut [f32]) -> Result<()> {
        let out = self.call(|back| Req::SumF32(data.to_vec(), back))?;
        data.copy_from_slice(&out);
        self.reduced
            .fetch_add(data.len() as u64 * 4, Ordering::Relaxed);
        Ok(())
    }

    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        self.call(|back| Req::Gather(value, back))
    }

    fn abort(&self, why: &str) {
        if let Some(tx) = &self.tx {
            if tx.send(Req::Abort(why.to_string())).is_ok() {
                // MPI_Abort ends this process too; wait for it.
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        }
        eprintln!("wgseg: {why}");
        std::process::exit(1);
    }

    fn reduced_bytes(&self) -> u64 {
        self.reduced.load(Ordering::Relaxed)
    }
}
