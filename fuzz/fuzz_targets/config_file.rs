#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cloudmesh_fuzz::run(data, cloudmesh::fuzzing::config_file);
});
