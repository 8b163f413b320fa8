# Nightly benchmark job (bench/nightly.py, issue 8).
# unit: the job against a fake engine + the regression detector on synthetic JSON (seconds, no engine).
qd_add_script_test(test_nightly_unit COMMAND bash ${CMAKE_SOURCE_DIR}/tests/nightly_test.sh unit
                   LABELS "unit" TIMEOUT 120)
# e2e: bench/nightly_matrix_ci.json with the real qdrop-gpu into ${build}/nightly-ci, then the detector
# against a copy (passes) and a copy with a 1-pt higher previous top-1 (must exit 1). 77 if no binary.
qd_add_script_test(test_nightly_ci_matrix COMMAND bash ${CMAKE_SOURCE_DIR}/tests/nightly_test.sh e2e
                   LABELS "e2e" TIMEOUT 900)
# Dockerfiles (no Docker engine here): structure, hadolint when installed, runtime libraries.
qd_add_script_test(test_docker_files COMMAND bash ${CMAKE_SOURCE_DIR}/tests/nightly_test.sh docker
                   LABELS "unit" TIMEOUT 60)
# Scheduler back ends (bench/nightly_sched.py). unit: Slurm batch scripts (dry run), the Kubernetes
# manifest validated offline (kubernetes-validate's bundled schemas) and its pod program executed
# with a fake engine, the GitHub Actions workflow checked against SchemaStore's schema.
qd_add_script_test(test_nightly_sched_unit COMMAND bash ${CMAKE_SOURCE_DIR}/tests/nightly_sched_test.sh unit
                   LABELS "unit" TIMEOUT 120)
# e2e: a real single-node Slurm cluster on localhost (munged + slurmctld + slurmd in a temp dir), a
# 3-element matrix with the real binary and a tiny model through `bench/nightly.sh slurm --wait`.
# Bounded at 180 s inside the script; the daemons are stopped on every exit.
qd_add_script_test(test_nightly_slurm COMMAND bash ${CMAKE_SOURCE_DIR}/tests/nightly_sched_test.sh slurm
                   LABELS "e2e" TIMEOUT 240)
