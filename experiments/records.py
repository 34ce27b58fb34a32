"""Running experiments into record folders, resumably: a run whose record exists with
the same settings and completed (or diverged) is loaded instead of run again."""
import json
import os
import pathlib

import train_mlp_pytorch


def load_record(records_dir, name):
    path = os.path.join(records_dir, name, 'history.json')
    return json.loads(pathlib.Path(path).read_text()) if os.path.isfile(path) else None


def is_done(records_dir, name, changes):
    record = load_record(records_dir, name)
    # a diverged run is a result too (the same seed diverges again); only interrupted runs are redone
    return (record is not None and record['summary']['status'] in ('completed', 'diverged')
            and all(record['config'].get(key) == value for key, value in changes.items()))


def run_mlp(records_dir, name, changes, data, rerun=False):
    """train_mlp_pytorch.train(**changes) into records_dir/name, unless already done."""
    if is_done(records_dir, name, changes) and not rerun:
        print(f'{name}: done, skipped', flush=True)
        return load_record(records_dir, name)
    print(f'{name}: running {changes}', flush=True)
    record = train_mlp_pytorch.train(**changes, data=data, output_dir=os.path.join(records_dir, name), progress=False)
    s = record['summary']
    if s['final_test_accuracy'] is None:
        print(f"{name}: {s['status']} at step {s['steps']}, before any evaluation", flush=True)
    else:
        print(f"{name}: {s['status']}, final {s['final_test_accuracy']:.4f} best {s['best_test_accuracy']:.4f} "
              f"in {s['time_s']:.0f} s", flush=True)
    return record
