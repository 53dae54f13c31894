using System.Text;
using System.Text.Json.Nodes;
using Runtime.Model.Lora;
using Runtime.Training.Checkpoints;
using Runtime.Training.Data;
using Runtime.Training.Engine;
using Runtime.Training.Optim;
using Runtime.Training.Planning;
using Runtime.Training.Tests.Data;
using Runtime.Training.Tests.Engine;

namespace Runtime.Training.Tests.Checkpoints;

/// <summary>What a checkpoint holds so that it can be exported without the run: the method, the base, and its description file.</summary>
[Collection(TorchTrainingCollection.Name)]
public sealed class CheckpointModelTests : IDisposable
{
    readonly DataTempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    static readonly LoraConfig Lora = new(4, 8, 0.1, ["q_proj", "v_proj", "down_proj"]);

    TrainingLoopOptions Options(long steps, string output, CheckpointModel model) => new()
    {
        Layout = new BatchLayout(2, 1, 1), Schedule = new LrSchedule(LrScheduleKind.Constant, 1e-3, steps, 0), MaxSteps = steps,
        Seed = 3, OutputFolder = output, CheckpointEvery = 1, Model = model,
    };

    string RunLora(string output, string baseFolder)
    {
        using var model = MicroModel.Create(MicroModel.Config(layers: 1));
        LoraInjector.Inject(model, Lora, 9);
        using var loop = new TrainingLoop(model, MicroModel.Batches(), Options(1, output, CheckpointModel.Adapter(Lora, baseFolder)));
        loop.Run();
        return Path.Combine(output, "checkpoint-1");
    }

    [Fact]
    public void A_lora_checkpoint_holds_the_peft_config_and_names_its_method_and_base()
    {
        var baseFolder = Directory.CreateDirectory(_temp.File("base")).FullName;
        var checkpoint = RunLora(_temp.File("out"), baseFolder);

        using var reader = CheckpointReader.Open(checkpoint);
        Assert.Equal(new CheckpointModelState(FineTuneMethod.Lora, baseFolder), reader.State.Model);
        // One home for the adapter's settings: PEFT's own file, byte for byte what an export writes.
        var path = reader.FilePath(PeftAdapterConfig.FileName);
        Assert.NotNull(path);
        Assert.Equal(PeftAdapterConfig.ToJson(Lora, baseFolder), File.ReadAllText(path));
        Assert.Equal((Lora, baseFolder), PeftAdapter.ReadConfig(checkpoint));
        Assert.Null(reader.FilePath("config.json"));
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, "state.json")))!;
        Assert.Equal("lora", state["model"]!["method"]!.GetValue<string>());
        Assert.Equal(baseFolder, state["model"]!["base_model"]!.GetValue<string>());
    }

    [Fact]
    public void A_full_checkpoint_keeps_the_base_config_bytes()
    {
        var config = MicroModel.Config(layers: 1);
        var baseFolder = Directory.CreateDirectory(_temp.File("base")).FullName;
        var configJson = config.ToJson().Replace("\"float32\"", "\"float32\" ", StringComparison.Ordinal); // bytes, not a re-serialisation
        File.WriteAllText(Path.Combine(baseFolder, "config.json"), configJson);
        using (var model = MicroModel.Create(config))
        using (var loop = new TrainingLoop(model, MicroModel.Batches(), Options(1, _temp.File("out"), CheckpointModel.Full(baseFolder))))
            loop.Run();

        using var reader = CheckpointReader.Open(_temp.File("out/checkpoint-1"));
        Assert.Equal(new CheckpointModelState(FineTuneMethod.Full, baseFolder), reader.State.Model);
        Assert.Equal(configJson, File.ReadAllText(reader.FilePath("config.json")!));
        Assert.Null(reader.FilePath(PeftAdapterConfig.FileName));
    }

    [Fact]
    public void The_description_file_is_required_and_verified_like_the_shards()
    {
        var checkpoint = RunLora(_temp.File("out"), "base-on-the-hub");

        // A run file whose bytes changed is caught by the manifest.
        var configPath = Path.Combine(checkpoint, PeftAdapterConfig.FileName);
        var original = File.ReadAllText(configPath);
        File.WriteAllText(configPath, original.Replace("\"r\": 4", "\"r\": 5", StringComparison.Ordinal));
        var corrupt = Assert.Throws<CheckpointException>(() => CheckpointReader.Open(checkpoint));
        Assert.Contains("adapter_config.json: SHA-256", corrupt.Message);

        // A manifest that does not list it, with a state that needs it, is refused.
        File.Delete(configPath);
        var manifestPath = Path.Combine(checkpoint, "manifest.json");
        var manifest = JsonNode.Parse(File.ReadAllText(manifestPath))!;
        var files = manifest["files"]!.AsArray();
        files.Remove(files.Single(f => f!["name"]!.GetValue<string>() == PeftAdapterConfig.FileName));
        File.WriteAllText(manifestPath, manifest.ToJsonString());
        var missing = Assert.Throws<CheckpointException>(() => CheckpointReader.Open(checkpoint));
        Assert.Contains("describes a lora run but the manifest lists no adapter_config.json", missing.Message);
    }

    [Fact]
    public void Commit_refuses_a_state_whose_description_file_was_not_written()
    {
        var committer = new CheckpointCommitter(_temp.File("out"), 0);
        committer.Begin(1);
        var state = new CheckpointState { Step = 1, DataPosition = 2, Seed = 3, Model = new CheckpointModelState(FineTuneMethod.Full, null) };
        var error = Assert.Throws<CheckpointException>(() => committer.Commit(1, state, []));
        Assert.Contains("describes a full run but 'config.json' was not written", error.Message);

        Assert.Throws<ArgumentException>(() => committer.WriteFile(1, "state.json", Encoding.UTF8.GetBytes("{}")));
        Assert.Throws<ArgumentException>(() => committer.WriteFile(1, "../config.json", Encoding.UTF8.GetBytes("{}")));
        Assert.Throws<ArgumentException>(() => committer.WriteFile(1, "trainable.9.safetensors", [1]));
        var file = committer.WriteFile(1, "config.json", Encoding.UTF8.GetBytes("{}"));
        Assert.Equal(2, file.Bytes);
        Assert.EndsWith("checkpoint-1", committer.Commit(1, state, [file]));
    }

    [Fact]
    public void Resume_refuses_a_checkpoint_of_another_method()
    {
        var checkpoint = RunLora(_temp.File("out"), "base");
        using var model = MicroModel.Create(MicroModel.Config(layers: 1));
        LoraInjector.Inject(model, Lora, 9);
        var error = Assert.Throws<CheckpointException>(() => new TrainingLoop(model, MicroModel.Batches(),
            Options(2, _temp.File("out"), CheckpointModel.Adapter(Lora, "base", quantizedBase: true)) with { ResumeFrom = checkpoint }));
        Assert.Contains("written by a lora run; this run is qlora", error.Message);
    }
}
