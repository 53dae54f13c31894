using Runtime.Model.Tokenization;
using Runtime.Training.Data;

namespace Runtime.Cluster.DataLoading;

/// <summary>
/// The opened data of a run, shared by everything in one process that reads it (the driver, and every data loader
/// hosted here): the tokenizer is loaded and the token cache mapped once, not once per replica. Every part of
/// <see cref="TrainingData"/> is a pure, thread-safe function of the file, the tokenizer and the options, so sharing it
/// changes nothing but the cost. Leases are counted; the last one to go closes the data.
/// </summary>
public static class SharedTrainingData
{
    static readonly object Gate = new();
    static readonly Dictionary<Key, Entry> Open = new();

    /// <summary>
    /// The data file opened with the model folder's tokenizer (building the token cache beside it if needed). Blocks
    /// while it opens: call it off any actor's message loop that must stay responsive.
    /// </summary>
    public static Lease Acquire(string dataPath, string modelFolder, TrainingDataOptions options)
    {
        var key = new Key(Path.GetFullPath(dataPath), Path.GetFullPath(modelFolder), options);
        Entry entry;
        lock (Gate)
        {
            if (!Open.TryGetValue(key, out entry!))
                Open[key] = entry = new Entry(key);
            entry.Leases++;
        }
        try
        {
            return new Lease(key, entry.Value);
        }
        catch
        {
            Release(key);
            throw;
        }
    }

    static void Release(Key key)
    {
        Entry? closing = null;
        lock (Gate)
        {
            if (Open.TryGetValue(key, out var entry) && --entry.Leases == 0)
            {
                Open.Remove(key);
                closing = entry;
            }
        }
        if (closing is { Value.IsValueCreated: true } && closing.Value.Value is { } data) data.Dispose();
    }

    internal readonly record struct Key(string DataPath, string ModelFolder, TrainingDataOptions Options);

    sealed class Entry(Key key)
    {
        public int Leases;

        // Opened by the first lease that asks; the others wait for it (or see its exception).
        public Lazy<TrainingData> Value { get; } = new(() => TrainingData.Open(key.DataPath, LoadTokenizer(key.ModelFolder), key.Options),
            LazyThreadSafetyMode.ExecutionAndPublication);
    }

    static Llama3Tokenizer LoadTokenizer(string modelFolder) =>
        Llama3Tokenizer.TryFind(modelFolder) is { } file
            ? Llama3Tokenizer.Load(file)
            : throw new FileNotFoundException(
                $"{modelFolder}: the model folder has no tokenizer ({Llama3Tokenizer.TokenizerJsonFile} or {Llama3Tokenizer.TiktokenModelFileInFolder}); the data is tokenized with the model's tokenizer (rt init --tokenizer copies one in)");

    /// <summary>One holder's use of the shared data; dispose it when done.</summary>
    public sealed class Lease : IDisposable
    {
        readonly Key _key;
        int _released;

        internal Lease(Key key, Lazy<TrainingData> data)
        {
            _key = key;
            Data = data.Value;
        }

        public TrainingData Data { get; }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) Release(_key);
        }
    }
}
