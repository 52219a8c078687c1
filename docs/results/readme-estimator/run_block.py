import re, time, json
src = open("README.md").read()
block = [b for b in re.findall(r"```python\n(.*?)```", src, re.S) if "SemiUnsupervisedClassifier" in b][0]
t = time.time(); ns = {}
exec(block, ns)
clf = ns["clf"]
rec = {"honest_test_accuracy": ns["honest"], "discovered": {str(k): v for k, v in clf.discovered_.items()},
       "results_test": clf.run_.results.get("validation"), "wall_s": time.time() - t, "run_dir": str(clf.run_dir_)}
print(json.dumps(rec, indent=1))
json.dump(rec, open("runs/readme_estimator.json", "w"), indent=1)
